"""The shape of a value: its text with numbers, ids and timestamps normalised away.

Two replies that differ only by a counter ("attempt 7 failed", "attempt 8 failed"), a fresh
uuid or a clock reading say the same thing. The watchdog compares shapes, not raw texts, and
the keeper hashes each state field's shape into the hop record, so a counter beside a loop does
not make the loop look like progress.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from choreo.schemas.ids import fingerprint

#: Longest first: a timestamp contains numbers, an id may contain digits.
_PATTERNS = (
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"),
        "<time>",
    ),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
            r"[0-9a-fA-F]{12}\b"
        ),
        "<id>",
    ),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{12,}\b"), "<id>"),
    # ULIDs, the mesh's own ids; with a letter, so a 26-digit number stays a number
    (re.compile(r"\b(?=[0-9A-Z]*[A-HJKMNP-TV-Z])[0-7][0-9A-HJKMNP-TV-Z]{25}\b"), "<id>"),
    (re.compile(r"[-+]?\d+(?:[.,]\d+)*"), "<n>"),
)
_sorted_json = msgspec.json.Encoder(order="sorted")


def normalise(text: str) -> str:
    """``text`` with timestamps, uuids, long hex or ULID ids and numbers replaced by
    placeholders (``<time>``, ``<id>``, ``<n>``), and runs of whitespace collapsed."""
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return " ".join(text.split())


def shape(value: Any) -> Any:
    """``value`` with every string normalised and every number replaced by ``"<n>"``
    (booleans kept); lists and mappings keep their structure and keys."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return "<n>"
    if isinstance(value, str):
        return normalise(value)
    if isinstance(value, dict):
        return {str(k): shape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shape(v) for v in value]
    return normalise(str(value))


def shape_hash(value: Any) -> str:
    """A short hash of ``shape(value)``, independent of key order."""
    return fingerprint(_sorted_json.encode(shape(value)))


def field_shape(value: Any) -> str:
    """A state field's shape hash; a list's is the hash of the *set* of its items' shapes.

    A list that grows with new kinds of items (a checklist) keeps changing shape; one that grows
    with more of the same (a log of "attempt <n>: variant A/B") settles, so a loop that keeps
    appending to a history is still seen going round.
    """
    if isinstance(value, list):
        return fingerprint(_sorted_json.encode(sorted({shape_hash(item) for item in value})))
    return shape_hash(value)
