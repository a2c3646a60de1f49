"""Every trace at a glance: a summary of each from the state and results topics.

A summary needs a snapshot's status, totals and writers, never its fields, so snapshots and the
deltas between them (choreo.schemas.deltas) are decoded into ``_Head``, a struct of just those
(msgspec skips what a struct does not declare): a trace's big values are never decoded to list
it. The newest version of each trace wins; a
terminal record, when there is one, has the last word on status and reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar

import msgspec
from aiokafka.structs import ConsumerRecord

from choreo.client.reports import TraceSummary
from choreo.schemas import FieldWrite, Totals

T = TypeVar("T")


class _Head(msgspec.Struct):
    """The part of a Snapshot (choreo.schemas.Snapshot) a summary shows."""

    trace_id: str
    version: int
    admitted_at: datetime
    updated_at: datetime
    status: str = "running"
    totals: Totals = msgspec.field(default_factory=Totals)
    writes: dict[str, FieldWrite] = msgspec.field(default_factory=dict)
    reason: str | None = None
    parent_trace_id: str | None = None


class _End(msgspec.Struct):
    """The part of a TerminalResult a summary shows."""

    trace_id: str
    status: str
    reason: str | None = None


_heads = msgspec.json.Decoder(_Head)
_ends = msgspec.json.Decoder(_End)


def summaries(
    snapshots: Iterable[ConsumerRecord[bytes, bytes]],
    results: Iterable[ConsumerRecord[bytes, bytes]],
) -> list[TraceSummary]:
    """One summary per trace with a snapshot, newest admitted first; records that do not
    decode are skipped (a shared topic's stray record must not hide the others)."""
    newest: dict[str, _Head] = {}
    #: Each trace's newest write: a delta holds only the writes it changed.
    last: dict[str, FieldWrite] = {}
    for head in _each(snapshots, _heads):
        seen = newest.get(head.trace_id)
        if seen is None or head.version >= seen.version:
            newest[head.trace_id] = head
        for write in head.writes.values():
            known = last.get(head.trace_id)
            if known is None or write.version >= known.version:
                last[head.trace_id] = write
    ended = {end.trace_id: end for end in _each(results, _ends)}
    found = [
        _summary(head, ended.get(head.trace_id), last.get(head.trace_id))
        for head in newest.values()
    ]
    return sorted(found, key=lambda s: (s.admitted_at, s.trace_id), reverse=True)


def _each(
    records: Iterable[ConsumerRecord[bytes, bytes]], decoder: msgspec.json.Decoder[T]
) -> list[T]:
    """Each record decoded; one that does not decode is skipped."""
    found = []
    for record in records:
        try:
            found.append(decoder.decode(record.value or b""))
        except msgspec.DecodeError:
            continue
    return found


def _summary(head: _Head, end: _End | None, last: FieldWrite | None) -> TraceSummary:
    totals = head.totals
    return TraceSummary(
        trace_id=head.trace_id,
        status=end.status if end is not None else head.status,
        admitted_at=head.admitted_at,
        updated_at=head.updated_at,
        hops=totals.hops,
        tokens=totals.tokens_in + totals.tokens_out,
        cost=totals.cost,
        last_agent=last.agent if last is not None else None,
        reason=(end.reason if end is not None else None) or head.reason,
        parent_trace_id=head.parent_trace_id,
        agents=tuple(sorted(totals.by_agent)),
    )
