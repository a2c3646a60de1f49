"""Rebuilding state from the outbox alone: the log is the truth, snapshots are a cache."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
from aiokafka.structs import ConsumerRecord

from choreo.kafka.clients import key_of
from choreo.keeper.batch import Batch
from choreo.keeper.machine import Keeper
from choreo.schemas import Snapshot
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec


def replay(
    spec: MeshSpec, topics: Topics, records: Iterable[ConsumerRecord[bytes, bytes]]
) -> Keeper:
    """A fresh keeper that has applied ``records`` (outbox, in partition order)."""
    keeper = Keeper(spec, topics)
    for record in records:
        _apply(keeper, record)
    return keeper


def _apply(keeper: Keeper, record: ConsumerRecord[bytes, bytes]) -> None:
    """Apply one outbox record as the live keeper does, its state records taken as written:
    what the live keeper would log (and refuse as too large) follows from them."""
    batch = Batch(blobs=keeper.blobs)
    keeper.apply(record, batch)
    batch.written_nowhere()
    keeper.written(batch)


def history(
    spec: MeshSpec, topics: Topics, records: Iterable[ConsumerRecord[bytes, bytes]], trace_id: str
) -> list[Snapshot]:
    """Every version of one trace, in order: index ``n - 1`` holds version ``n``."""
    keeper = Keeper(spec, topics)
    versions: list[Snapshot] = []
    for record in records:
        if record.key is not None and key_of(record) != trace_id:
            continue
        _apply(keeper, record)
        snapshot = keeper.traces.get(trace_id)
        if snapshot is not None and (not versions or snapshot.version > versions[-1].version):
            versions.append(snapshot)
        elif snapshot is not None and snapshot.status != versions[-1].status:
            versions[-1] = snapshot  # finishing does not bump the version
    return versions


@dataclass(frozen=True)
class Comparison:
    """One trace's live snapshot beside the one rebuilt from the outbox, at the same version."""

    trace_id: str
    live: Snapshot | None
    rebuilt: Snapshot | None
    differences: tuple[str, ...]


def compare(
    spec: MeshSpec,
    topics: Topics,
    records: Iterable[ConsumerRecord[bytes, bytes]],
    live: dict[str, Snapshot],
) -> list[Comparison]:
    """Replay ``records`` into a fresh keeper and compare each trace with its live snapshot.

    Read the live snapshots *before* the outbox: the outbox then holds every record they were
    built from, and each trace is compared at its live version, so a mesh still running does
    not show steps folded after the snapshot was read as a difference.
    """
    keeper = Keeper(spec, topics)
    at_live: dict[str, Snapshot] = {}
    for record in records:
        _apply(keeper, record)
        trace_id = key_of(record)
        rebuilt = keeper.traces.get(trace_id) if trace_id else None
        target = live.get(trace_id) if trace_id else None
        if rebuilt is not None and (target is None or rebuilt.version <= target.version):
            at_live[rebuilt.trace_id] = rebuilt
    return [
        Comparison(
            trace_id,
            live.get(trace_id),
            at_live.get(trace_id),
            _differences(live.get(trace_id), at_live.get(trace_id)),
        )
        for trace_id in sorted(live.keys() | at_live.keys())
    ]


def _differences(live: Snapshot | None, rebuilt: Snapshot | None) -> tuple[str, ...]:
    if live is None:
        return ("no live snapshot on the state topic",)
    if rebuilt is None:
        return ("no record of the trace in the outbox",)
    if rebuilt.version < live.version:
        return (f"the outbox rebuilds version {rebuilt.version}, live is {live.version}",)
    a, b = msgspec.to_builtins(live), msgspec.to_builtins(rebuilt)
    found = []
    for key in sorted(a.keys() | b.keys()):
        if key == "fields":
            names = a["fields"].keys() | b["fields"].keys()
            found += [
                f"fields.{n}" for n in sorted(names) if a["fields"].get(n) != b["fields"].get(n)
            ]
        elif a.get(key) != b.get(key):
            found.append(key)
    return tuple(found)
