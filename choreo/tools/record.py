"""Each tool call as the mesh sees it: a hop-record entry, a metric, a span.

The arguments are identified by the SHA-256 of their canonical JSON, so the same call made
again is recognisable (loop detection) without keeping what was sent; the arguments and the
result themselves are kept only with ``CHOREO_TRACE_CONTENT`` (telemetry.record_content).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import msgspec

from choreo.observe import telemetry
from choreo.observe.metrics import TOOL_CALLS
from choreo.schemas import Envelope, ToolCallRecord
from choreo.schemas.codec import clean_text

log = logging.getLogger(__name__)

#: Every status a tool call can end with (``ToolCallRecord.status``).
STATUSES = ("ok", "error", "timeout", "invalid", "refused")
#: Characters of a tool's arguments and result kept in a hop record with content recording.
CONTENT_CHARS = 2000


def canonical_arguments(raw: str) -> tuple[dict[str, Any] | None, str]:
    """The arguments of a call (``None`` when not a JSON object) and their canonical text.

    Never raises: arguments that are not JSON, or nested past the parser's recursion limit,
    are not an object; a lone surrogate, raw or escaped, becomes U+FFFD (``clean_text``), so
    the text always encodes (for its hash, the hop record and the tool).
    """
    raw = clean_text(raw or "{}")
    try:
        value = json.loads(raw)
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if (cleaned := clean_text(text)) is not text:  # an escape decoded to a lone surrogate
            text, value = cleaned, json.loads(cleaned)
    except (ValueError, RecursionError):
        return None, raw
    return (value if isinstance(value, dict) else None), text


def args_sha256(canonical: str) -> str:
    """The hex SHA-256 of a call's canonical arguments."""
    return hashlib.sha256(canonical.encode()).hexdigest()


def prime(names: list[str]) -> None:
    """Zero series for the tools an agent offers, so ``rate()`` sees their first call."""
    for name in names:
        for status in STATUSES:
            TOOL_CALLS.labels(tool=name, status=status)


def make_record(
    name: str, canonical: str, status: str, latency_ms: float, result: str, server: str | None
) -> ToolCallRecord:
    """The hop record's entry for one call; counted in ``choreo_tool_calls_total``."""
    TOOL_CALLS.labels(tool=name, status=status).inc()
    content = telemetry.record_content()
    return ToolCallRecord(
        name=name,
        args_sha256=args_sha256(canonical),
        status=status,  # type: ignore[arg-type]
        latency_ms=round(latency_ms, 3),
        result_chars=len(result),
        server=server,
        arguments=canonical[:CONTENT_CHARS] if content else None,
        result=result[:CONTENT_CHARS] if content else None,
    )


def from_payload(step: Envelope) -> list[ToolCallRecord]:
    """The tool calls a step reported in its payload; a malformed list is logged and dropped
    (it must not stop the keeper from folding the step)."""
    raw = step.payload.get("tool_calls")
    if not raw:
        return []
    try:
        return msgspec.convert(raw, list[ToolCallRecord])
    except msgspec.ValidationError as exc:
        log.warning("tool calls not recorded", extra={"trace_id": step.trace_id, "error": str(exc)})
        return []
