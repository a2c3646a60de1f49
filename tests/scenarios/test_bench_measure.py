"""How ``choreo bench watchdog`` counts steps, on literal records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from choreo.bench.watchdog import Observation, measure
from choreo.schemas import ControlVerdict, HopRecord, TerminalResult, Totals

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def hop(n: int, tokens: int = 0) -> HopRecord:
    return HopRecord(
        trace_id="t",
        event_id=f"e{n}",
        agent="a",
        hop=n,
        type="x",
        state_version=n + 1,
        state_hash="s",
        input_fingerprint="f",
        totals=Totals(hops=n, tokens_in=tokens * n),
        created_at=T0 + timedelta(seconds=n),
    )


def verdict(action: str, at: float, evidence: dict[str, object]) -> ControlVerdict:
    return ControlVerdict(
        verdict_id=action,
        trace_id="t",
        action=action,  # type: ignore[arg-type]
        reason="loop.stuck",
        evidence=evidence,
        created_at=T0 + timedelta(seconds=at),
    )


def test_steps_are_counted_from_the_evidence_hop_to_each_verdict_and_to_the_end() -> None:
    seen = Observation(
        "t",
        [verdict("persona_shift", 5.5, {"hop": 5}), verdict("halt", 8.5, {"hop": 7})],
        [],
        [hop(n) for n in range(1, 10)],
        [TerminalResult(trace_id="t", status="halted")],
    )
    row = measure("loop", seen)
    assert (row.evidence_hop, row.before_shift, row.before_halt, row.before_end) == (5, 0, 3, 4)
    assert row.actions == ("persona_shift", "halt") and row.status == "halted"


def test_a_budget_halt_from_a_snapshot_counts_from_the_first_hop_over_the_limit() -> None:
    halt = verdict(
        "halt", 4.5, {"state_version": 5, "details": {"tokens": {"used": 400, "limit": 250}}}
    )
    row = measure("budget", Observation("t", [halt], [], [hop(n, 100) for n in range(1, 5)], []))
    assert (row.evidence_hop, row.before_halt, row.before_shift) == (3, 1, None)
    assert row.status == "running"
