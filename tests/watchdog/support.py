"""Hop records as the keeper writes them, for the watchdog's policy and service tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from choreo.schemas import HopRecord, Totals
from choreo.schemas.records import ToolCallRecord

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def hop(
    n: int,
    agent: str,
    *,
    state: str,
    fingerprint: str,
    output: str,
    tokens: int = 0,
    trace: str = "t1",
    situation: str = "",
    fields: dict[str, str] | None = None,
    tools: list[tuple[str, str]] | None = None,
) -> HopRecord:
    """Hop ``n`` of ``trace``, written ``n`` seconds after ``T0``, with its running totals;
    ``fields`` are the state's field shape hashes, ``tools`` its (name, arguments hash)."""
    return HopRecord(
        trace_id=trace,
        event_id=f"{trace}-e{n}",
        agent=agent,
        hop=n,
        type=f"{agent}.done",
        state_version=n,
        state_hash=state,
        input_fingerprint=fingerprint,
        output=output,
        totals=Totals(hops=n, tokens_in=tokens * n, tokens_out=tokens * n),
        created_at=T0 + timedelta(seconds=n),
        situation=situation,
        read_version=n - 1,
        field_hashes=fields or {},
        tool_calls=[ToolCallRecord(name=name, args_sha256=args) for name, args in tools or ()],
    )
