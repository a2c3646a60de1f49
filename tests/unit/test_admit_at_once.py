"""A new trace's admission applied as the keeper logs it is the transition a read-back applies.

The keeper skips reading its own ``trace.admit`` back when the task arrived on its trace's own
partition and the trace is new; replay still applies the logged record. These tests hold the
two paths to the same state and outputs, and check when the shortcut is not taken.
"""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.kafka.clients import partition_for
from choreo.kafka.limits import RecordLimit
from choreo.keeper.batch import Batch
from choreo.keeper.machine import Keeper
from choreo.schemas import Envelope, Task, TerminalResult, decode, encode
from choreo.schemas.records import ADMIT
from tests.unit.support import consumed
from tests.unit.test_keeper import SPEC, TOPICS, sent

PARTITIONS = 4


def _keeper() -> Keeper:
    keeper = Keeper(SPEC, TOPICS)
    keeper.partitions = PARTITIONS
    return keeper


def _task(
    trace_id: str,
    text: str = "a piece",
    timestamp_ms: int = 1_700_000_000_000,
    partition: int | None = None,
    offset: int = 7,
) -> ConsumerRecord[bytes, bytes]:
    home = partition_for(trace_id, PARTITIONS) if partition is None else partition
    return consumed(
        TOPICS.tasks,
        offset,
        encode(Task(input=text)),
        key=trace_id,
        timestamp_ms=timestamp_ms,
        partition=home,
    )


def _read_back(keeper: Keeper, value: bytes, trace_id: str) -> tuple[str | None, Batch]:
    batch = Batch()
    record = consumed(
        TOPICS.outbox, 100, value, key=trace_id, partition=partition_for(trace_id, PARTITIONS)
    )
    return keeper.apply(record, batch), batch


@settings(max_examples=40, deadline=None)
@given(
    trace_id=st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20
    ),
    text=st.text(max_size=200),
    timestamp_ms=st.integers(1_000_000_000_000, 4_000_000_000_000),
)
def test_applied_as_logged_equals_applied_when_read_back(
    trace_id: str, text: str, timestamp_ms: int
) -> None:
    live = _keeper()
    batch = Batch()
    assert live.intake(_task(trace_id, text, timestamp_ms), batch) is None
    [(topic, key, admit, _)] = batch.first
    assert (topic, key) == (TOPICS.outbox, trace_id)
    assert decode(admit, Envelope).type == ADMIT

    replayed = Keeper(SPEC, TOPICS)  # what replay does: apply the logged admission
    reason, replay_batch = _read_back(replayed, admit, trace_id)
    assert reason is None
    assert replayed.traces[trace_id] == live.traces[trace_id]
    assert [(t, k, v) for t, k, v, _ in replay_batch.sends] == [
        (t, k, v) for t, k, v, _ in batch.sends
    ]
    assert replay_batch.snapshots == batch.snapshots

    # Read back by the live keeper itself, the admission is a repeat: nothing more happens.
    before = live.traces[trace_id]
    reason, again = _read_back(live, admit, trace_id)
    assert reason is None and again.sends == [] and again.snapshots == {}
    assert live.traces[trace_id] == before


def test_the_admission_is_timed_by_the_task_record_so_every_copy_is_the_same() -> None:
    # A task read again after a crash logs the same admission, byte for byte.
    first, second = Batch(), Batch()
    _keeper().intake(_task("t1", timestamp_ms=1_700_000_123_456), first)
    _keeper().intake(_task("t1", timestamp_ms=1_700_000_123_456), second)
    assert first.first[0][2] == second.first[0][2]
    admit = decode(first.first[0][2], Envelope)
    assert admit.created_at.timestamp() == 1_700_000_123.456


def test_a_task_on_another_partition_than_its_trace_is_read_back() -> None:
    keeper = _keeper()
    home = partition_for("t1", PARTITIONS)
    batch = Batch()
    keeper.intake(_task("t1", partition=(home + 1) % PARTITIONS), batch)
    assert batch.first == [] and keeper.traces == {}
    assert [t for t, _, _, _ in batch.sends] == [TOPICS.outbox]


def test_a_known_trace_is_read_back_and_refused_there() -> None:
    keeper = _keeper()
    keeper.intake(_task("t1"), Batch())
    batch = Batch()
    keeper.intake(_task("t1", text="other", offset=8), batch)
    assert batch.first == []
    reason, _ = _read_back(keeper, batch.sends[0][2], "t1")
    assert reason is not None and "already admitted" in reason


def test_an_admission_whose_state_is_over_the_limit_ends_its_trace_once() -> None:
    # Room for the admission but not for the state it creates:
    # the trace fails with the reason, the task is dead-lettered, the admission stays logged.
    probe = Batch()
    _keeper().intake(_task("t1"), probe)
    keeper = _keeper()
    batch = Batch(limit=RecordLimit(len(probe.first[0][2]) + 60))
    reason = keeper.intake(_task("t1"), batch)
    assert reason is not None and "over the record limit" in reason
    assert len(batch.first) == 1
    [result] = sent(batch, TOPICS.results, TerminalResult)
    assert result.status == "failed" and result.reason == reason
    assert keeper.traces["t1"].status == "failed"


def test_the_same_admission_read_back_ends_its_trace_once() -> None:
    # The same on the read-back path (a task that arrived on another partition).
    probe = Batch()
    _keeper().intake(_task("t1"), probe)
    keeper = Keeper(SPEC, TOPICS)  # partitions unknown: every admission is read back
    logged = Batch()
    keeper.intake(_task("t1"), logged)
    batch = Batch(limit=RecordLimit(len(probe.first[0][2]) + 60))
    reason = keeper.handle(
        keeper.apply, consumed(TOPICS.outbox, 3, logged.sends[0][2], key="t1"), batch
    )
    assert reason is not None and "over the record limit" in reason
    [result] = sent(batch, TOPICS.results, TerminalResult)
    assert result.status == "failed" and result.reason == reason
