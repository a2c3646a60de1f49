"""One batch of the keeper's output, held until it is produced, and never over the limit."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from choreo.kafka.limits import RecordLimit
from choreo.observe import telemetry
from choreo.observe.telemetry import Headers
from choreo.schemas import Record, Snapshot, encode
from choreo.schemas.codec import to_json

#: One record to produce: (topic, key, value, headers).
Send = tuple[str, str, bytes, Headers]


@dataclass
class Batch:
    """Everything one batch of input produces: the records logged first (:meth:`log_first`),
    then the other records, then the snapshots, each group acknowledged before the next.

    Nothing over ``limit`` is ever queued: :meth:`send` and :meth:`store` raise
    :class:`RecordTooLarge` instead, and the keeper ends the trace that caused it.
    """

    #: Outbox records the keeper applied as it wrote them: durable before anything they cause.
    first: list[Send] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    limit: RecordLimit = field(default_factory=RecordLimit)
    #: Each queued snapshot as encoded for its size check, so it is encoded once.
    _snapshot_bytes: dict[str, bytes] = field(default_factory=dict)

    def send(self, topic: str, key: str, record: Record, headers: Headers | None = None) -> Send:
        """Queue ``record``; return what is queued. Raises :class:`RecordTooLarge`."""
        self.sends.append(self._encoded(topic, key, record, headers))
        return self.sends[-1]

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
        value = self.limit.check(f"the {type(record).__name__} for {topic}", encode(record))
        return topic, key, value, telemetry.inject(headers or ())

    def store(self, snapshot: Snapshot) -> Snapshot:
        """Queue ``snapshot`` for the state topic; return what is queued.

        A running trace's snapshot over the limit raises :class:`RecordTooLarge` (the trace
        then fails); an ended trace's is cut to fit (see :func:`fit_snapshot`), since its
        terminal record must be written whatever its state holds.
        """
        if snapshot.status == "running":
            value = self.limit.check("the state snapshot", encode(snapshot))
        else:
            snapshot, value = fit_snapshot(snapshot, self.limit)
        self.snapshots[snapshot.trace_id] = snapshot
        self._snapshot_bytes[snapshot.trace_id] = value
        return snapshot

    def snapshot_records(self) -> list[tuple[str, bytes]]:
        """The queued snapshots as (trace id, encoded value), for the state topic."""
        return [(trace_id, self._snapshot_bytes[trace_id]) for trace_id in self.snapshots]

    def mark(self, trace_id: str) -> Mark:
        """Where the batch stands for one trace, to :meth:`rollback` to."""
        queued = self.snapshots.get(trace_id)
        return Mark(
            len(self.first),
            len(self.sends),
            None if queued is None else (queued, self._snapshot_bytes[trace_id]),
        )

    def rollback(self, trace_id: str, mark: Mark) -> None:
        """Forget what was queued for ``trace_id`` since :meth:`mark`."""
        del self.first[mark.first :]
        del self.sends[mark.sends :]
        if mark.snapshot is None:
            self.snapshots.pop(trace_id, None)
            self._snapshot_bytes.pop(trace_id, None)
        else:
            self.snapshots[trace_id], self._snapshot_bytes[trace_id] = mark.snapshot


@dataclass(frozen=True)
class Mark:
    """How much of a :class:`Batch` was queued, and one trace's snapshot then (if any), with
    its encoding."""

    first: int
    sends: int
    snapshot: tuple[Snapshot, bytes] | None


def fit_snapshot(snapshot: Snapshot, limit: RecordLimit) -> tuple[Snapshot, bytes]:
    """An ended trace's snapshot that fits ``limit``, and its encoding: its largest fields
    replaced, one by one, by a note of their size, until it fits (or its state is empty)."""
    try:
        value = encode(snapshot)
    except (TypeError, ValueError, UnicodeError):  # state that cannot be encoded is dropped
        return _emptied(snapshot)
    if limit.fits(value):
        return snapshot, value
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
