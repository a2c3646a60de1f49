"""One batch of the keeper's output, held until it is produced, and never over the limit;
and what of each trace the state log holds (choreo.schemas.deltas)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from choreo.kafka.limits import RecordLimit
from choreo.keeper.blobs import Blobs, Pending, big, placed
from choreo.observe import telemetry
from choreo.observe.telemetry import Headers
from choreo.schemas import Envelope, Record, Snapshot, encode
from choreo.schemas.codec import to_json
from choreo.schemas.deltas import delta_between, delta_key
from choreo.schemas.records import ExtendField, FieldChange, SetField, StateDelta

#: One record to produce: (topic, key, value, headers).
Send = tuple[str, str, bytes, Headers]


@dataclass(frozen=True)
class Keys:
    """Delta keys written since a trace's last full snapshot, newest first: a chain, so a new
    version adds its key in O(1), whatever the number before it."""

    key: str
    before: Keys | None = None

    def __iter__(self) -> Iterator[str]:
        link: Keys | None = self
        while link is not None:
            yield link.key
            link = link.before

    @classmethod
    def of(cls, keys: Iterable[str]) -> Keys | None:
        """A chain of ``keys`` (oldest first); None when there are none."""
        chain = None
        for key in keys:
            chain = cls(key, chain)
        return chain


@dataclass
class Logged:
    """What the state log holds of one running trace (choreo.schemas.deltas): the state it
    folds to, the bytes of deltas written since its last full snapshot, how many bytes of
    deltas make the next full snapshot due, and the delta keys the next one tombstones."""

    snapshot: Snapshot
    due_bytes: int
    since_bytes: int = 0
    delta_keys: Keys | None = None


@dataclass(frozen=True)
class StateWrite:
    """One record of a trace for the state topic: a full snapshot keyed by the trace id
    (``tombstones``: the delta keys it replaces) or a delta keyed ``<trace id>/<version>``;
    ``logged`` is what the log holds once it is written."""

    key: str
    value: bytes
    logged: Logged
    tombstones: tuple[str, ...] = ()


@dataclass
class Batch:
    """Everything one batch of input produces: the records logged first (:meth:`log_first`),
    then the other records, then the state log's records, then the terminal results
    (:meth:`send_last`), each group acknowledged before the next.

    Nothing over ``limit`` is ever queued: :meth:`send` and :meth:`store` raise
    :class:`RecordTooLarge` instead, and the keeper ends the trace that caused it. With
    ``blobs``, state values over its threshold are queued as references (choreo.keeper.blobs):
    their chunks (:attr:`chunks`) are written before everything else, and the other records
    get their offsets (:meth:`place`).
    """

    #: Outbox records the keeper applied as it wrote them: durable before anything they cause.
    first: list[Send] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    #: Terminal results: produced after everything else, the state included, so a reader
    #: that has seen a trace's result finds the hops and state that led to it.
    last: list[Send] = field(default_factory=list)
    #: Each trace's newest state in this batch.
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    limit: RecordLimit = field(default_factory=RecordLimit)
    blobs: Blobs | None = None
    #: Chunks of values by reference, written before any other record of the batch.
    chunks: list[Pending] = field(default_factory=list)
    #: Each trace's records for the state topic, one per version stored, in order.
    _states: dict[str, list[StateWrite]] = field(default_factory=dict)

    def send(self, topic: str, key: str, record: Record, headers: Headers | None = None) -> Send:
        """Queue ``record``; return what is queued. Raises :class:`RecordTooLarge`."""
        self.sends.append(self._encoded(topic, key, record, headers))
        return self.sends[-1]

    def send_last(self, topic: str, key: str, record: Record) -> Send:
        """Queue ``record`` to be produced after all the batch's other records. Returns what
        is queued; raises :class:`RecordTooLarge`."""
        self.last.append(self._encoded(topic, key, record, None))
        return self.last[-1]

    def log_first(
        self, topic: str, key: str, record: Record, headers: Headers | None = None
    ) -> Send:
        """Queue ``record`` as one the batch's other outputs follow from: it is produced and
        acknowledged before them, so none is ever visible without it. Returns what is
        queued; raises :class:`RecordTooLarge`."""
        self.first.append(self._encoded(topic, key, record, headers))
        return self.first[-1]

    def _encoded(self, topic: str, key: str, record: Record, headers: Headers | None) -> Send:
        # Sent while a record's span is current: the output continues that record's trace.
        if isinstance(record, Envelope) and record.state:
            state = self._by_ref(record.trace_id, record.state)
            record = msgspec.structs.replace(record, state=state)
        value = self.limit.check(f"the {type(record).__name__} for {topic}", encode(record))
        return topic, key, value, telemetry.inject(headers or ())

    def store(self, snapshot: Snapshot, logged: Logged | None = None) -> Snapshot:
        """Queue ``snapshot``'s version for the state topic; return the snapshot as queued.

        ``logged`` is what the state log held of the trace before this batch (None: nothing,
        a new trace). A running trace's version goes as a delta from the one before it,
        unless a full snapshot is due: the deltas since the last one add up to its size (so
        full snapshots cost at most as much as the deltas, whatever the state's size), or
        there is none yet. A due snapshot over ``limit`` is put off by as many bytes again, and
        the deltas go on; a first snapshot or a delta over ``limit`` raises
        :class:`RecordTooLarge` (the trace then fails). An ended trace's snapshot is always
        full, and cut to fit (see :func:`fit_snapshot`), since its terminal record must be
        written whatever its state holds.
        """
        trace_id = snapshot.trace_id
        queued = self._states.get(trace_id, [])
        before = queued[-1].logged if queued else logged
        mark = len(self.chunks)
        if snapshot.status != "running":
            snapshot, value = fit_snapshot(snapshot, self.limit, self._snapshot_by_ref)
            write = _full(snapshot, value, before, self._cost(value, mark))
        elif before is None:
            whole = encode(self._snapshot_by_ref(snapshot))
            whole = self.limit.check("the state snapshot", whole)
            write = _full(snapshot, whole, None, self._cost(whole, mark))
        else:
            write = self._delta(snapshot, before)
        self._states[trace_id] = [*queued, write]
        self.snapshots[trace_id] = snapshot
        return snapshot

    def _delta(self, snapshot: Snapshot, before: Logged) -> StateWrite:
        """``snapshot``'s version as a delta from ``before``, or as a full snapshot when one
        is due and fits."""
        mark = len(self.chunks)
        value = self.limit.check(
            "the state delta",
            encode(self._delta_by_ref(delta_between(before.snapshot, snapshot), snapshot)),
        )
        since = before.since_bytes + self._cost(value, mark)
        if since >= before.due_bytes:
            mark = len(self.chunks)
            whole = encode(self._snapshot_by_ref(snapshot))
            if self.limit.fits(whole):
                return _full(snapshot, whole, before, self._cost(whole, mark))
            due = since + len(whole)  # not now: once as many bytes of deltas again are written
        else:
            due = before.due_bytes
        key = delta_key(snapshot.trace_id, snapshot.version)
        return StateWrite(key, value, Logged(snapshot, due, since, Keys(key, before.delta_keys)))

    def _cost(self, value: bytes, mark: int) -> int:
        """The bytes a state record ``value`` costs: its own and those of the chunks queued
        for it (since ``chunks`` held ``mark``)."""
        return len(value) + sum(len(data) for _, _, data in self.chunks[mark:])

    def _by_ref(self, trace_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` with values over the blob threshold as references (none without
        ``blobs``)."""
        if self.blobs is None:
            return fields
        return self.blobs.fields(trace_id, fields, self.chunks)

    def _snapshot_by_ref(self, snapshot: Snapshot) -> Snapshot:
        fields = self._by_ref(snapshot.trace_id, snapshot.fields)
        return (
            snapshot
            if fields is snapshot.fields
            else msgspec.structs.replace(snapshot, fields=fields)
        )

    def _delta_by_ref(self, delta: StateDelta, snapshot: Snapshot) -> StateDelta:
        """``delta`` with each new value over the blob threshold as a reference; a change
        over it made of items or entries goes as the field's whole new value, by reference
        (a step that adds that much is rare; its chunks before the change are shared)."""
        if self.blobs is None or not delta.changes:
            return delta
        changes: dict[str, FieldChange] = {}
        for name, change in delta.changes.items():
            if isinstance(change, SetField):
                changes[name] = SetField(self._by_ref(delta.trace_id, {name: change.value})[name])
            elif big(
                change.items if isinstance(change, ExtendField) else change.entries,
                self.blobs.threshold,
            ):
                whole = snapshot.fields[name]
                changes[name] = SetField(self._by_ref(delta.trace_id, {name: whole})[name])
            else:
                changes[name] = change
        return msgspec.structs.replace(delta, changes=changes)

    def place(self, offsets: dict[tuple[str, int], int]) -> None:
        """Give the queued records the offsets of the chunks written (by sha256 and
        partition; see choreo.keeper.blobs.placed), and note them on ``blobs``."""
        if self.blobs is None or not self.chunks:
            return
        for trace_id, chunk, _ in self.chunks:
            self.blobs.place(trace_id, chunk.sha256, offsets[chunk.sha256, chunk.partition])
        self.first = [(t, k, placed(v, offsets), h) for t, k, v, h in self.first]
        self.sends = [(t, k, placed(v, offsets), h) for t, k, v, h in self.sends]
        self.last = [(t, k, placed(v, offsets), h) for t, k, v, h in self.last]
        for trace_id, writes in self._states.items():
            self._states[trace_id] = [
                dataclasses.replace(w, value=placed(w.value, offsets)) for w in writes
            ]

    def written_nowhere(self) -> None:
        """Note the chunks as written (at offset 0) without writing them: for a keeper that
        produces nothing (a replay, the in-process benchmark), so that, as live, a chunk is
        queued once and its records are measured as the live keeper's."""
        self.place({(chunk.sha256, chunk.partition): 0 for _, chunk, _ in self.chunks})

    def records(self) -> list[Send]:
        """Every record queued but the state log's, in the order they are produced."""
        return self.first + self.sends + self.last

    def state_records(self) -> list[tuple[str, str, bytes | None]]:
        """The state topic's records, as (trace id, key, value; None for a tombstone), in the
        order they are to be produced."""
        found: list[tuple[str, str, bytes | None]] = []
        for trace_id, writes in self._states.items():
            for write in writes:
                found.append((trace_id, write.key, write.value))
                found += [(trace_id, key, None) for key in write.tombstones]
        return found

    def logged(self) -> dict[str, Logged]:
        """What the state log holds of each trace once this batch's records are written."""
        return {trace_id: writes[-1].logged for trace_id, writes in self._states.items()}

    def mark(self, trace_id: str) -> Mark:
        """Where the batch stands for one trace, to :meth:`rollback` to."""
        return Mark(
            len(self.first),
            len(self.sends),
            len(self.last),
            self.snapshots.get(trace_id),
            len(self._states.get(trace_id, ())),
        )

    def rollback(self, trace_id: str, mark: Mark) -> None:
        """Forget what was queued for ``trace_id`` since :meth:`mark`."""
        del self.first[mark.first :]
        del self.sends[mark.sends :]
        del self.last[mark.last :]
        if mark.snapshot is None:
            self.snapshots.pop(trace_id, None)
            self._states.pop(trace_id, None)
        else:
            self.snapshots[trace_id] = mark.snapshot
            self._states[trace_id] = self._states[trace_id][: mark.states]


@dataclass(frozen=True)
class Mark:
    """How much of a :class:`Batch` was queued, and one trace's snapshot and state records
    then."""

    first: int
    sends: int
    last: int
    snapshot: Snapshot | None
    states: int


def _full(snapshot: Snapshot, value: bytes, before: Logged | None, cost: int) -> StateWrite:
    """A full snapshot encoded as ``value``, tombstoning the deltas ``before`` it; ``cost``:
    its bytes and those of its new chunks, which as many bytes of deltas make due again."""
    return StateWrite(
        snapshot.trace_id,
        value,
        Logged(snapshot, cost),
        tuple(before.delta_keys or ()) if before is not None else (),
    )


def fit_snapshot(
    snapshot: Snapshot, limit: RecordLimit, by_ref: Callable[[Snapshot], Snapshot] = lambda s: s
) -> tuple[Snapshot, bytes]:
    """An ended trace's snapshot that fits ``limit``, and its encoding: ``snapshot`` as
    written (``by_ref``: its big values as references), or, over ``limit`` still, with its
    largest fields replaced, one by one, by a note of their size, until it fits (or its state
    is empty)."""
    whole = snapshot
    try:
        snapshot = by_ref(snapshot)
        value = encode(snapshot)
    except (TypeError, ValueError, UnicodeError):  # state that cannot be encoded is dropped
        return _emptied(whole)
    if limit.fits(value):
        return whole, value
    fields = dict(snapshot.fields)
    sizes = sorted(((len(to_json(v)), k) for k, v in fields.items()), reverse=True)
    for size, name in sizes:
        fields[name] = f"[cut: {size} bytes, over the record limit of {limit.max_bytes} bytes]"
        cut = msgspec.structs.replace(snapshot, fields=fields)
        if limit.fits(value := encode(cut)):
            return cut, value
    return _emptied(snapshot)


def _emptied(snapshot: Snapshot) -> tuple[Snapshot, bytes]:
    empty = msgspec.structs.replace(snapshot, fields={})
    return empty, encode(empty)
