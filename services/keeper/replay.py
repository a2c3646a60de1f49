"""Rebuilding state from the outbox alone: the log is the truth, snapshots are a cache."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.structs import ConsumerRecord

from schemas import Snapshot
from services.keeper.service import Batch, Keeper
from services.runtime.spec import MeshSpec
from services.runtime.topics import Topics


def replay(spec: MeshSpec, topics: Topics,
           records: Iterable[ConsumerRecord[bytes, bytes]]) -> Keeper:
    """A fresh keeper that has applied ``records`` (outbox, in partition order)."""
    keeper = Keeper(spec, topics)
    for record in records:
        keeper.apply(record, Batch())
    return keeper


def history(spec: MeshSpec, topics: Topics, records: Iterable[ConsumerRecord[bytes, bytes]],
            trace_id: str) -> list[Snapshot]:
    """Every version of one trace, in order: index ``n - 1`` holds version ``n``."""
    keeper = Keeper(spec, topics)
    versions: list[Snapshot] = []
    for record in records:
        if record.key is not None and record.key.decode() != trace_id:
            continue
        keeper.apply(record, Batch())
        snapshot = keeper.traces.get(trace_id)
        if snapshot is not None and (not versions or snapshot.version > versions[-1].version):
            versions.append(snapshot)
        elif snapshot is not None and snapshot.status != versions[-1].status:
            versions[-1] = snapshot  # finishing does not bump the version
    return versions
