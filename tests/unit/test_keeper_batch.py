"""A keeper batch rolls one trace back to a mark, and produces each snapshot as it was checked."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from choreo.kafka.limits import RecordLimit
from choreo.keeper.batch import Batch
from choreo.schemas import Snapshot, decode, encode
from choreo.schemas.deltas import StateLog


def _snapshot(version: int, text: str = "x", status: str = "running") -> Snapshot:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Snapshot(
        trace_id="t",
        version=version,
        status=status,  # type: ignore[arg-type]
        fields={"text": text, "kept": 1},
        admitted_at=at,
        updated_at=at,
    )


def test_rollback_restores_the_snapshot_queued_at_the_mark_and_its_bytes() -> None:
    batch = Batch()
    batch.store(_snapshot(1))
    mark = batch.mark("t")
    batch.store(_snapshot(2))
    batch.send("topic", "t", _snapshot(2))
    batch.rollback("t", mark)
    assert batch.sends == []
    [(trace_id, key, value)] = batch.state_records()
    assert trace_id == key == "t" and value is not None
    assert decode(value, Snapshot) == batch.snapshots["t"] == _snapshot(1)


def test_rollback_to_before_any_snapshot_forgets_the_trace() -> None:
    batch = Batch()
    mark = batch.mark("t")
    batch.store(_snapshot(1))
    batch.rollback("t", mark)
    assert batch.snapshots == {} and batch.state_records() == []


def test_an_ended_trace_is_produced_as_cut_to_fit() -> None:
    batch = Batch(limit=RecordLimit(700))
    stored = batch.store(_snapshot(3, text="y" * 1000, status="completed"))
    [(_, _, value)] = batch.state_records()
    assert value is not None and len(value) <= 700 and value == encode(stored)
    assert stored.fields["kept"] == 1 and str(stored.fields["text"]).startswith("[cut:")


def _lines(version: int, count: int) -> Snapshot:
    return msgspec.structs.replace(_snapshot(version), fields={"log": LINES[:count]})


LINES = [f"{n:04d}" + "x" * 2000 for n in range(1200)]


def test_a_trace_past_the_record_limit_is_logged_in_deltas_each_under_it() -> None:
    """1,200 steps appending 2 KB lines: the state reaches 2.4 MB, every record stays under
    the 1 MiB limit, the log folds to the state at every step, and the bytes written stay
    within a few times what the steps appended (full snapshots are put off once too large)."""
    limit = RecordLimit(1 << 20)
    logged = None
    log = StateLog()
    written = 0
    for step in range(1, 1201):
        batch = Batch(limit=limit)
        batch.store(_lines(step, step), logged)
        for _, key, value in batch.state_records():
            assert value is None or len(value) <= limit.max_bytes
            written += len(value or b"")
            log.add(key.encode(), value)
        logged = batch.logged()["t"]
        if step % 100 == 0:
            assert log.state("t") == decode(encode(_lines(step, step)), Snapshot)
    appended = sum(len(line) for line in LINES)
    assert written < 4 * appended


def test_full_snapshots_cost_no_more_than_the_deltas_between_them() -> None:
    """And each one tombstones the deltas before it: what compaction keeps of a trace is its
    newest snapshot and the deltas after it."""
    logged = None
    full = deltas = 0
    log = StateLog()
    after_last_full: set[str] = set()
    for step in range(1, 401):
        batch = Batch()
        batch.store(_lines(step, step), logged)
        for _, key, value in batch.state_records():
            log.add(key.encode(), value)
            if key == "t":
                full += len(value or b"")
                after_last_full = set()
            elif value is not None:
                deltas += len(value)
                after_last_full.add(key)
        logged = batch.logged()["t"]
    assert full <= deltas + len(encode(_lines(400, 400)))
    assert log.tails["t"].live_keys == after_last_full
