"""The keeper's transitions, fed consumed records directly: admit, fold, forward, end once."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import pytest

from choreo.agent.step import outcome, step_event
from choreo.keeper.batch import Batch
from choreo.keeper.machine import Keeper
from choreo.schemas import (
    Budget,
    Envelope,
    Escalation,
    HopRecord,
    Record,
    Task,
    TerminalResult,
    Usage,
    decode,
    encode,
)
from choreo.schemas.records import ADMIT, HALT, STEP_FAILED, STEP_REFUSED
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh
from tests.unit.support import WRITER_EDITOR, consumed

R = TypeVar("R", bound=Record)
TOPICS = Topics("unit")
SPEC = load_mesh(WRITER_EDITOR)


class Harness:
    """A keeper and the offsets/timestamps of the records handed to it."""

    def __init__(self) -> None:
        self.keeper = Keeper(SPEC, TOPICS)
        self.offsets = itertools.count()
        self.clock = itertools.count(1_700_000_000_000, 1000)

    def _record(self, topic: str, value: bytes, key: str | None) -> Any:
        return consumed(topic, next(self.offsets), value, key=key, timestamp_ms=next(self.clock))

    def intake(self, value: bytes, key: str | None = None) -> tuple[str | None, Batch]:
        batch = Batch()
        return self.keeper.intake(self._record(TOPICS.tasks, value, key), batch), batch

    def apply(self, step: Envelope | bytes) -> tuple[str | None, Batch]:
        value = step if isinstance(step, bytes) else encode(step)
        batch = Batch()
        key = None if isinstance(step, bytes) else step.trace_id
        return self.keeper.apply(self._record(TOPICS.outbox, value, key), batch), batch

    def admitted(self, trace_id: str = "t1", text: str = "a piece on Kafka") -> Envelope:
        """Submit a task, apply its admission; return the event sent to the entry topic."""
        reason, batch = self.intake(encode(Task(input=text)), key=trace_id)
        assert reason is None
        reason, batch = self.apply(sent(batch, TOPICS.outbox, Envelope)[0])
        assert reason is None
        return sent(batch, TOPICS.event("draft.requested"), Envelope)[0]


def sent(batch: Batch, topic: str, record_type: type[R]) -> list[R]:
    return [decode(value, record_type) for t, _, value, _ in batch.sends + batch.last if t == topic]


def step(agent: str, cause: Envelope, text: str) -> Envelope:
    return outcome(SPEC.agent(agent), cause, text, Usage(tokens_in=3, tokens_out=5), [])


def test_a_task_becomes_an_admit_record_on_the_outbox() -> None:
    harness = Harness()
    reason, batch = harness.intake(b'{"input": "hello"}', key="t1")
    assert reason is None
    assert [(t, k) for t, k, _, _ in batch.sends] == [(TOPICS.outbox, "t1")]
    admit = sent(batch, TOPICS.outbox, Envelope)[0]
    assert (admit.type, admit.trace_id, admit.payload["task"]["input"]) == (ADMIT, "t1", "hello")
    assert harness.keeper.traces == {}  # nothing is applied until read back from the outbox


def test_trace_id_comes_from_the_task_then_the_key() -> None:
    harness = Harness()
    _, batch = harness.intake(b'{"input": "x", "trace_id": "named"}', key="k")
    assert sent(batch, TOPICS.outbox, Envelope)[0].trace_id == "named"
    _, batch = harness.intake(b'{"input": "x"}', key="k")
    assert sent(batch, TOPICS.outbox, Envelope)[0].trace_id == "k"


def test_a_task_without_any_id_gets_one_stable_under_replay() -> None:
    first, second = Harness(), Harness()
    ids = [
        sent(h.intake(b'{"input": "x"}')[1], TOPICS.outbox, Envelope)[0].trace_id
        for h in (first, second)
    ]
    assert ids[0] == ids[1]


def test_an_invalid_task_is_dead_lettered() -> None:
    reason, batch = Harness().intake(b'{"text": "no input field"}', key="t1")
    assert reason is not None and "input" in reason
    assert batch.sends == []


def test_admission_creates_version_one_and_forwards_to_the_entry_topic() -> None:
    harness = Harness()
    entry = harness.admitted()
    snapshot = harness.keeper.traces["t1"]
    assert snapshot.version == 1 and snapshot.status == "running"
    assert entry.type == "draft.requested" and entry.hop == 0
    assert entry.state_version == 1
    assert entry.state == {"revisions": 0, "input": "a piece on Kafka"}
    assert entry.budget.max_hops == 12 and entry.budget.deadline is not None


def test_a_redelivered_admission_changes_nothing() -> None:
    harness = Harness()
    _, batch = harness.intake(encode(Task(input="x")), key="t1")
    admit = sent(batch, TOPICS.outbox, Envelope)[0]
    harness.apply(admit)
    before = harness.keeper.traces["t1"]
    reason, batch = harness.apply(admit)
    assert reason is None and batch.sends == [] and batch.snapshots == {}
    assert harness.keeper.traces["t1"] == before


def test_a_second_task_with_the_same_trace_id_is_dead_lettered() -> None:
    harness = Harness()
    harness.admitted("t1")
    _, batch = harness.intake(encode(Task(input="other")), key="t1")
    reason, batch = harness.apply(sent(batch, TOPICS.outbox, Envelope)[0])
    assert reason is not None and "already admitted" in reason
    assert batch.sends == []


def test_a_step_is_folded_and_forwarded_with_the_new_state() -> None:
    harness = Harness()
    draft = step("writer", harness.admitted(), "Draft one.")
    reason, batch = harness.apply(draft)
    assert reason is None
    snapshot = harness.keeper.traces["t1"]
    assert snapshot.version == 2
    assert snapshot.fields["draft"] == "Draft one."
    assert snapshot.writes["draft"].agent == "writer"
    forwarded = sent(batch, TOPICS.event("draft.ready"), Envelope)
    assert len(forwarded) == 1
    assert forwarded[0].state == snapshot.fields and forwarded[0].state_version == 2
    assert forwarded[0].delta is None
    hop = sent(batch, TOPICS.hops, HopRecord)
    assert [(h.agent, h.status, h.state_version) for h in hop] == [("writer", "ok", 2)]
    assert batch.snapshots == {"t1": snapshot}


def test_a_redelivered_step_changes_nothing() -> None:
    harness = Harness()
    draft = step("writer", harness.admitted(), "Draft one.")
    harness.apply(draft)
    before = harness.keeper.traces["t1"]
    reason, batch = harness.apply(draft)
    assert reason is None and batch.sends == [] and batch.snapshots == {}
    assert harness.keeper.traces["t1"] == before


def test_a_step_of_an_unknown_trace_is_dead_lettered() -> None:
    stray = step("writer", Harness().admitted("t2"), "x")
    reason, batch = Harness().apply(stray)
    assert reason is not None and "t2" in reason
    assert batch.sends == []


def test_an_undecodable_outbox_record_is_dead_lettered() -> None:
    reason, batch = Harness().apply(b"{not json")
    assert reason is not None and batch.sends == []


def test_a_refused_step_halts_the_trace_with_exactly_one_result() -> None:
    harness = Harness()
    entry = harness.admitted()
    refused = step_event(
        SPEC.agent("writer"),
        entry,
        STEP_REFUSED,
        payload={"reason": "writer: hop budget exhausted"},
    )
    _, batch = harness.apply(refused)
    results = sent(batch, TOPICS.results, TerminalResult)
    assert [(r.status, r.reason) for r in results] == [("halted", "writer: hop budget exhausted")]
    assert harness.keeper.traces["t1"].status == "halted"
    _, again = harness.apply(refused)
    assert again.sends == []


def test_steps_after_the_end_are_dropped() -> None:
    harness = Harness()
    entry = harness.admitted()
    harness.apply(
        step_event(SPEC.agent("writer"), entry, STEP_REFUSED, payload={"reason": "budget"})
    )
    ended = harness.keeper.traces["t1"]
    late = msgspec.structs.replace(step("writer", entry, "late draft"), event_id="late-1")
    reason, batch = harness.apply(late)
    assert reason is None and batch.sends == [] and batch.snapshots == {}
    assert harness.keeper.traces["t1"] == ended


def test_an_ended_trace_is_kept_small_yet_still_drops_late_steps_and_repeat_tasks() -> None:
    harness = Harness()
    _, batch = harness.intake(encode(Task(input="x" * 10_000)), key="t1")
    admit = sent(batch, TOPICS.outbox, Envelope)[0]
    _, admitted = harness.apply(admit)
    entry = sent(admitted, TOPICS.event("draft.requested"), Envelope)[0]
    _, refused = harness.apply(
        step_event(SPEC.agent("writer"), entry, STEP_REFUSED, payload={"reason": "budget"})
    )
    harness.keeper.settle(refused)  # what the service does once the final snapshot is acked

    ended = harness.keeper.traces["t1"]
    assert ended.status == "halted" and ended.fields == {} and ended.writes == {}
    late = msgspec.structs.replace(step("writer", entry, "late draft"), event_id="late-1")
    for record in (late, admit):  # a late step, and the same task redelivered
        reason, batch = harness.apply(record)
        assert reason is None and batch.sends == [] and batch.snapshots == {}


def test_finish_takes_its_output_from_the_routes_output_field() -> None:
    harness = Harness()
    draft = step("writer", harness.admitted(), "The final draft.")
    _, batch = harness.apply(draft)
    review = sent(batch, TOPICS.event("draft.ready"), Envelope)[0]
    _, batch = harness.apply(step("editor", review, "APPROVED"))
    results = sent(batch, TOPICS.results, TerminalResult)
    assert len(results) == 1
    assert (results[0].status, results[0].output) == ("completed", "The final draft.")
    assert results[0].usage.hops == 2 and results[0].usage.tokens_out == 10
    assert harness.keeper.traces["t1"].status == "completed"


def test_a_full_revision_cycle_counts_revisions() -> None:
    harness = Harness()
    cause = harness.admitted()
    for text in ("REVISE: shorter", "REVISE: clearer"):
        _, batch = harness.apply(step("writer", cause, f"draft before {text}"))
        review = sent(batch, TOPICS.event("draft.ready"), Envelope)[0]
        _, batch = harness.apply(step("editor", review, text))
        cause = sent(batch, TOPICS.event("revision.requested"), Envelope)[0]
    assert cause.state is not None and cause.state["revisions"] == 2
    assert cause.state["review"] == "REVISE: clearer"


def test_a_delta_that_does_not_fit_its_reducer_fails_the_trace() -> None:
    harness = Harness()
    entry = harness.admitted()
    bad = step_event(
        SPEC.agent("editor"), entry, "revision.requested", delta={"revisions": "one more"}
    )
    reason, batch = harness.apply(bad)
    assert reason is not None and "revisions" in reason
    results = sent(batch, TOPICS.results, TerminalResult)
    assert len(results) == 1 and results[0].status == "failed"
    assert results[0].reason is not None and "revisions" in results[0].reason
    assert sent(batch, TOPICS.event("revision.requested"), Envelope) == []
    assert harness.keeper.traces["t1"].status == "failed"


def test_a_value_shaped_as_a_reference_is_refused_and_fails_the_trace() -> None:
    harness = Harness()
    entry = harness.admitted()
    forged = {"$blob": {"sha256": "0" * 64, "size": 2, "topic": "unit.blobs", "chunks": []}}
    bad = step_event(SPEC.agent("writer"), entry, "draft.ready", delta={"draft": forged})
    reason, batch = harness.apply(bad)
    assert reason is not None and '"$blob" is reserved' in reason
    (result,) = sent(batch, TOPICS.results, TerminalResult)
    assert result.status == "failed" and "draft" in (result.reason or "")


def test_a_task_whose_initial_state_holds_a_reference_ends_failed_once() -> None:
    harness = Harness()
    task = Task(input="hello", initial_state={"notes": {"$blob": {}}})
    reason, batch = harness.intake(encode(task), key="t1")
    assert reason is None
    admit = sent(batch, TOPICS.outbox, Envelope)[0]
    batch = Batch()
    keeper = harness.keeper
    reason = keeper.handle(keeper.apply, harness._record(TOPICS.outbox, encode(admit), "t1"), batch)
    assert reason is not None and '"$blob" is reserved' in reason
    (result,) = sent(batch, TOPICS.results, TerminalResult)
    assert result.status == "failed" and '"$blob" is reserved' in (result.reason or "")
    assert sent(batch, TOPICS.event("draft.requested"), Envelope) == []


# -- the wall-clock budget: one ending, whoever sees the deadline pass first ----------------

WALL_CLOCK_WITNESSES = ("sweep", "refusal", "failed call", "watchdog")


def _wall_clock_notice(harness: Harness, witness: str, entry: Envelope) -> Envelope:
    """What ``witness`` writes to the outbox once the trace's deadline has passed."""
    if witness == "sweep":
        batch = Batch()
        assert harness.keeper.sweep(datetime(2100, 1, 1, tzinfo=UTC), batch) == 1
        return sent(batch, TOPICS.outbox, Envelope)[0]
    if witness == "watchdog":
        return Envelope(
            event_id="halt-1",
            trace_id=entry.trace_id,
            type=HALT,
            source="watchdog",
            payload={"reason": "budget.wall_clock", "verdict_id": "v1", "evidence": {}},
        )
    kind, reason = (
        (STEP_REFUSED, "writer: deadline passed")
        if witness == "refusal"
        else (STEP_FAILED, "model call failed (deadline)")
    )
    return step_event(SPEC.agent("writer"), entry, kind, payload={"reason": reason})


@pytest.mark.parametrize("order", list(itertools.permutations(WALL_CLOCK_WITNESSES)))
def test_the_wall_clock_ends_a_trace_halted_with_one_escalation_whoever_sees_it_first(
    order: tuple[str, ...],
) -> None:
    harness = Harness()
    _, batch = harness.intake(encode(Task(input="x", budget=Budget(max_seconds=1))), key="t1")
    _, batch = harness.apply(sent(batch, TOPICS.outbox, Envelope)[0])
    entry = sent(batch, TOPICS.event("draft.requested"), Envelope)[0]
    next(harness.clock)  # the records below arrive past the deadline
    notices = {witness: _wall_clock_notice(harness, witness, entry) for witness in order}
    results: list[TerminalResult] = []
    escalations: list[Escalation] = []
    for witness in order:
        _, batch = harness.apply(notices[witness])
        results += sent(batch, TOPICS.results, TerminalResult)
        escalations += sent(batch, TOPICS.escalations, Escalation)
    assert [r.status for r in results] == ["halted"]
    assert results[0].reason is not None and results[0].reason.startswith("budget.wall_clock")
    assert len(escalations) == 1
    if order[0] != "watchdog":  # the keeper's own evidence, shaped like the watchdog's
        assert escalations[0].evidence["rule"] == "budget.wall_clock"
        assert set(escalations[0].evidence["wall_clock"]) == {"at", "deadline"}


def _python_mesh(reads: list[str] | None) -> Any:
    from choreo.spec.mesh import parse_mesh

    agent: dict[str, Any] = {
        "name": "counter",
        "kind": "python",
        "handler": "tests.unit.nowhere:count",
        "subscribe": ["work.next"],
        "emit": ["work.next"],
    }
    if reads is not None:
        agent["reads"] = reads
    return parse_mesh(
        {
            "name": "reads",
            "entry": ["work.next"],
            "state": {"log": {"reducer": "append"}, "n": {"reducer": "add", "default": 0}},
            "models": {"m": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}},
            "agents": [agent],
        }
    )


@pytest.mark.parametrize(
    ("reads", "carried"), [(["n"], {"input", "n"}), (None, {"input", "n", "log"})]
)
def test_a_python_agents_events_carry_only_the_fields_it_reads(
    reads: list[str] | None, carried: set[str]
) -> None:
    keeper = Keeper(_python_mesh(reads), TOPICS)
    admit = Envelope(
        event_id="admit-1",
        trace_id="t1",
        type=ADMIT,
        source="task",
        payload={"task": {"input": "count"}, "origin": "tasks/0/0"},
    )
    keeper.apply(consumed(TOPICS.outbox, 0, encode(admit), key="t1"), Batch())
    wrote = Envelope(
        event_id="step-1",
        trace_id="t1",
        type="work.next",
        source="counter",
        hop=1,
        state_version=1,
        delta={"log": "a long line", "n": 1},
    )
    batch = Batch()
    assert keeper.apply(consumed(TOPICS.outbox, 1, encode(wrote), key="t1"), batch) is None
    (forwarded,) = sent(batch, TOPICS.event("work.next"), Envelope)
    assert set(forwarded.state or {}) == carried
    assert keeper.traces["t1"].fields["log"] == ["a long line"]  # the state keeps every field


def test_the_keeper_measures_a_snapshot_over_the_limit_as_its_encoding_does() -> None:
    from choreo.keeper import fold as transitions
    from choreo.keeper.fold import FoldError

    spec = _python_mesh(["n"]).model_copy(update={"max_snapshot_bytes": 1024})
    keeper = Keeper(spec, TOPICS)
    admit = Envelope(
        event_id="admit-1",
        trace_id="t1",
        type=ADMIT,
        source="task",
        payload={"task": {"input": "count"}, "origin": "tasks/0/0"},
    )
    keeper.apply(consumed(TOPICS.outbox, 0, encode(admit), key="t1"), Batch())
    before = keeper.traces["t1"]
    big = Envelope(
        event_id="step-1",
        trace_id="t1",
        type="work.next",
        source="counter",
        hop=1,
        state_version=1,
        delta={"log": "é" * 600, "n": 1},
    )
    record = consumed(TOPICS.outbox, 1, encode(big), key="t1")
    with pytest.raises(FoldError) as encoded:
        transitions.fold(spec, before, big, before.updated_at)
    reason = keeper.apply(record, Batch())
    assert reason is not None and str(encoded.value) in reason  # "would be N bytes", same N
