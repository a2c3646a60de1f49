"""A keeper batch rolls one trace back to a mark, and produces each snapshot as it was checked."""

from __future__ import annotations

from datetime import UTC, datetime

from choreo.kafka.limits import RecordLimit
from choreo.keeper.batch import Batch
from choreo.schemas import Snapshot, decode, encode


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
    [(trace_id, value)] = batch.snapshot_records()
    assert trace_id == "t" and decode(value, Snapshot) == batch.snapshots["t"] == _snapshot(1)


def test_rollback_to_before_any_snapshot_forgets_the_trace() -> None:
    batch = Batch()
    mark = batch.mark("t")
    batch.store(_snapshot(1))
    batch.rollback("t", mark)
    assert batch.snapshots == {} and batch.snapshot_records() == []


def test_an_ended_trace_is_produced_as_cut_to_fit() -> None:
    batch = Batch(limit=RecordLimit(700))
    stored = batch.store(_snapshot(3, text="y" * 1000, status="completed"))
    [(_, value)] = batch.snapshot_records()
    assert len(value) <= 700 and value == encode(stored)
    assert stored.fields["kept"] == 1 and str(stored.fields["text"]).startswith("[cut:")
