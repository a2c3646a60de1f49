"""One fully populated instance of every wire record, shared by the codec and contract tests.

A new record type must add a sample here (a test checks that every type has one).
"""

from __future__ import annotations

from datetime import UTC, datetime

from choreo.schemas import (
    Budget,
    ControlVerdict,
    DeadLetter,
    Envelope,
    Escalation,
    FieldWrite,
    HopRecord,
    Record,
    Snapshot,
    StateConflict,
    StateDelta,
    Task,
    TerminalResult,
    Totals,
    Usage,
)
from choreo.schemas.records import ExtendField, MergeField, SetField

AT = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
USAGE = Usage(tokens_in=12, tokens_out=34, cost=0.0021, latency_ms=88.5, model="m", calls=1)
TOTALS = Totals(tokens_in=100, tokens_out=200, cost=0.5, hops=3)
BUDGET = Budget(max_hops=5, max_tokens=1000, max_cost=1.5, max_seconds=60.0, deadline=AT)
WRITE = FieldWrite(version=3, agent="writer")

#: One fully populated sample per record type; a new type must add one here.
SAMPLES: dict[str, Record] = {
    "Task": Task(
        input="write",
        trace_id="t1",
        budget=BUDGET,
        metadata={"user": "u"},
        parent_trace_id="t0",
        initial_state={"draft": "x"},
    ),
    "Envelope": Envelope(
        event_id="e1",
        trace_id="t1",
        causation_id="e0",
        type="draft.ready",
        source="writer",
        hop=2,
        budget=BUDGET,
        state_version=4,
        state={"draft": "x", "n": [1, 2]},
        delta={"draft": "y"},
        payload={"text": "y"},
        usage=USAGE,
        created_at=AT,
    ),
    "Snapshot": Snapshot(
        trace_id="t1",
        version=4,
        status="completed",
        fields={"a": {"b": 1}},
        writes={"a": WRITE},
        totals=TOTALS,
        budget=BUDGET,
        applied=["e0", "e1"],
        origin="choreo.tasks/0/7",
        reason=None,
        parent_trace_id="t0",
        admitted_at=AT,
        updated_at=AT,
    ),
    "StateDelta": StateDelta(
        trace_id="t1",
        base_version=4,
        version=6,
        changes={
            "log": ExtendField(items=["line"]),
            "meta": MergeField(entries={"k": 1}),
            "draft": SetField(value="x"),
        },
        removed=["scratch"],
        writes={"log": WRITE},
        applied=["e2", "e3"],
        totals=TOTALS,
        budget=BUDGET,
        origin="choreo.tasks/0/7",
        parent_trace_id="t0",
        admitted_at=AT,
        updated_at=AT,
    ),
    "HopRecord": HopRecord(
        trace_id="t1",
        event_id="e1",
        causation_id="e0",
        agent="writer",
        hop=2,
        type="draft.ready",
        status="failed",
        state_version=4,
        state_hash="abcd",
        input_fingerprint="ef01",
        output="text",
        duration_ms=12.5,
        usage=USAGE,
        totals=TOTALS,
        conflicts=1,
        created_at=AT,
    ),
    "ControlVerdict": ControlVerdict(
        verdict_id="v1",
        trace_id="t1",
        action="persona_shift",
        reason="stuck",
        evidence={"similarity": 0.97},
        agent="writer",
        temperature=0.9,
        system_prompt="debug",
        source="watchdog",
        created_at=AT,
    ),
    "TerminalResult": TerminalResult(
        trace_id="t1",
        status="halted",
        output={"x": [1]},
        reason="loop",
        state_version=9,
        usage=TOTALS,
        parent_trace_id="t0",
        finished_at=AT,
    ),
    "Escalation": Escalation(
        escalation_id="x1",
        trace_id="t1",
        reason="loop",
        evidence={"cycle": ["a", "b"]},
        state_version=9,
        status="resumed",
        guidance="try again",
        continuation_trace_id="t2",
        created_at=AT,
    ),
    "StateConflict": StateConflict(
        trace_id="t1",
        field="draft",
        base_version=2,
        version=4,
        policy="reject",
        kept=WRITE,
        kept_value="a",
        other=FieldWrite(version=4, agent="editor"),
        other_value="b",
        created_at=AT,
    ),
    "DeadLetter": DeadLetter(
        topic="choreo.tasks",
        partition=1,
        offset=42,
        key="k",
        reason="not JSON",
        consumer="keeper",
        original=b"\x00\xffnot json",
        created_at=AT,
    ),
}
