"""The state log: a full snapshot now and then, and between them what changed.

The state topic holds, per trace, a full :class:`~choreo.schemas.records.Snapshot` keyed by
the trace id (the compacted "latest" view) and, after it, one
:class:`~choreo.schemas.records.StateDelta` per batch of the keeper keyed
``<trace id>/<version>`` on the same partition. A reader takes the newest snapshot and folds
the deltas that follow it (:class:`StateLog`); a newer snapshot is followed by tombstones for
the deltas it replaces, so compaction keeps a bounded tail per trace.

A delta says what changed, not which writes made it: a list grown at its end travels as its new
items, an object with some keys changed as those keys, anything else as its new value. So
folding needs neither the mesh spec nor any reducer (user reducers included), and a delta
costs what the step changed. It relies on what reducers already promise for replay
(docs/ARCHITECTURE.md, "Long traces"): they never change a value in place, so an unchanged
field, list item or object entry is the very same object before and after a fold, and
:func:`delta_between` finds the changes by identity, without comparing or encoding values.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from choreo.schemas.blobs import grown, ref_of
from choreo.schemas.codec import DecodeError, decode
from choreo.schemas.records import (
    ExtendField,
    FieldChange,
    MergeField,
    SetField,
    Snapshot,
    StateDelta,
)

#: Separates the trace id from the version in a delta's key.
DELTA_SEPARATOR = "/"


def delta_key(trace_id: str, version: int) -> str:
    """The key of the delta that brings ``trace_id`` to ``version``: ``<trace id>/<version>``."""
    return f"{trace_id}{DELTA_SEPARATOR}{version}"


def of_trace(key: bytes | None, trace_id: str) -> bool:
    """True when a state-topic ``key`` is ``trace_id``'s: its snapshot's or one of its deltas'.

    A trace id may itself hold ``/``, so a key can look like another trace's delta key; the
    reader tells them apart by the record's own ``trace_id`` (see :class:`StateLog`).
    """
    if key is None:
        return False
    own = trace_id.encode()
    if key == own:
        return True
    prefix = own + DELTA_SEPARATOR.encode()
    return key.startswith(prefix) and key[len(prefix) :].isdigit()


def change_of(old: Any, new: Any) -> FieldChange:
    """How a field went from ``old`` to ``new``: the items added at the end of a list whose
    other items are the same objects, the entries of an object that are new or other objects
    (none removed), else the whole new value. Costs O(the number of items or keys), compared by
    identity: no value is encoded or compared by content."""
    if type(old) is list and type(new) is list and len(new) >= len(old):
        if all(map(operator.is_, old, new)):
            return ExtendField(items=new[len(old) :])
    elif type(old) is dict and type(new) is dict and old.keys() <= new.keys():
        entries = {k: v for k, v in new.items() if k not in old or old[k] is not v}
        if len(entries) < len(new):
            return MergeField(entries=entries)
    return SetField(value=new)


def delta_between(old: Snapshot, new: Snapshot) -> StateDelta:
    """The delta that brings ``old`` (an earlier version of the same trace) to ``new``.

    O(the number of fields) for the fields, plus what changed in them (:func:`change_of`); the
    applied ids are those ``new`` has after ``old``'s (each snapshot's ``applied`` list only
    grows).
    """
    changes: dict[str, FieldChange] = {}
    for name, value in new.fields.items():
        if name not in old.fields:
            changes[name] = SetField(value=value)
        elif old.fields[name] is not value:
            changes[name] = change_of(old.fields[name], value)
    return StateDelta(
        trace_id=new.trace_id,
        base_version=old.version,
        version=new.version,
        status=new.status,
        changes=changes,
        removed=[name for name in old.fields if name not in new.fields],
        writes={n: w for n, w in new.writes.items() if old.writes.get(n) != w},
        applied=new.applied[len(old.applied) :],
        totals=new.totals,
        budget=new.budget,
        origin=new.origin,
        reason=new.reason,
        parent_trace_id=new.parent_trace_id,
        admitted_at=new.admitted_at,
        updated_at=new.updated_at,
        personas=new.personas,
        reserved=new.reserved,
        extensions=new.extensions,
    )


def fold_deltas(snapshot: Snapshot, deltas: Iterable[StateDelta]) -> Snapshot:
    """``snapshot`` with ``deltas`` (a chain: each one's ``base_version`` the version before
    it) applied in order; ``snapshot`` is left untouched.

    Each list or object a delta changes is copied once, however many deltas change it after,
    so folding n deltas costs O(what they hold plus the fields they touch), not n copies of
    the state.

    Raises:
        ValueError: a delta does not start at the version before it (a gap in the log).
    """
    fields = dict(snapshot.fields)
    writes = dict(snapshot.writes)
    applied = list(snapshot.applied)
    copied: set[str] = set()
    head: Snapshot | StateDelta = snapshot
    for delta in deltas:
        if delta.base_version != head.version:
            raise ValueError(
                f"trace {snapshot.trace_id}: a delta from version {delta.base_version} "
                f"follows version {head.version}"
            )
        for name, change in delta.changes.items():
            _apply(fields, copied, name, change)
        for name in delta.removed:
            fields.pop(name, None)
            copied.discard(name)
        writes.update(delta.writes)
        applied += delta.applied
        head = delta
    if head is snapshot:
        return snapshot
    assert isinstance(head, StateDelta)
    return Snapshot(
        trace_id=snapshot.trace_id,
        version=head.version,
        status=head.status,
        fields=fields,
        writes=writes,
        totals=head.totals,
        budget=head.budget,
        applied=applied,
        origin=head.origin,
        reason=head.reason,
        parent_trace_id=head.parent_trace_id,
        admitted_at=head.admitted_at,
        updated_at=head.updated_at,
        personas=head.personas,
        reserved=head.reserved,
        extensions=head.extensions,
    )


def _apply(fields: dict[str, Any], copied: set[str], name: str, change: FieldChange) -> None:
    """Apply one field's change to ``fields``, copying a list or object the first time it is
    grown (``copied`` names those already private to this fold)."""
    if isinstance(change, SetField):
        fields[name] = change.value
        copied.discard(name)  # a value from the delta: never grown in place
        return
    current = fields.get(name)
    if isinstance(current, dict) and ref_of(current) is not None:
        # a value by reference: grown once a reader of the log fetches it
        more, over = (
            (change.items, None) if isinstance(change, ExtendField) else (None, change.entries)
        )
        fields[name] = grown(current, more, over, own=name in copied)
    elif isinstance(change, ExtendField):
        items = current if name in copied and type(current) is list else list(current or ())
        items.extend(change.items)
        fields[name] = items
    else:
        entries = current if name in copied and type(current) is dict else dict(current or {})
        entries.update(change.entries)
        fields[name] = entries
    copied.add(name)


class _Kind(msgspec.Struct):
    """What tells a delta from a snapshot on the state topic: a delta has a base version."""

    trace_id: str
    base_version: int | None = None


_kinds = msgspec.json.Decoder(_Kind)


def read_state(value: bytes) -> Snapshot | StateDelta:
    """A state-topic record's value as a snapshot or a delta.

    Raises:
        DecodeError: it is neither.
    """
    try:
        kind = _kinds.decode(value)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid state record: {exc}") from None
    if kind.base_version is None:
        return decode(value, Snapshot)
    return decode(value, StateDelta)


@dataclass
class Tail:
    """One trace on the state log: its newest full snapshot (and that record's size in bytes)
    and the deltas after it, by base version, with the keys of every delta not tombstoned."""

    snapshot: Snapshot | None = None
    snapshot_bytes: int = 0
    deltas: dict[int, tuple[StateDelta, int]] = field(default_factory=dict)
    #: Delta keys written and not yet tombstoned: the next full snapshot tombstones them.
    live_keys: set[str] = field(default_factory=set)

    def chain(self) -> list[tuple[StateDelta, int]]:
        """The deltas that follow the snapshot, in order, each with its size in bytes; it
        stops at the first gap."""
        found = []
        version = self.snapshot.version if self.snapshot is not None else None
        while version is not None and version in self.deltas:
            found.append(self.deltas[version])
            version = self.deltas[version][0].version
        return found


class Keyed(Protocol):
    """A record as a Kafka consumer gives it: its key and value bytes (None: a tombstone)."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...


class StateLog:
    """A state topic read in log order, folded into each trace's newest state.

    Feed it every record of the topic's partitions (:meth:`add`), then ask for the
    :meth:`latest` state of each trace. Records that are neither a snapshot nor a delta are
    counted in ``skipped`` and otherwise ignored: a stray record on a shared topic must not
    hide the others.
    """

    def __init__(self) -> None:
        self.tails: dict[str, Tail] = {}
        self.skipped = 0

    @classmethod
    def read(cls, records: Iterable[Keyed]) -> StateLog:
        """A log fed ``records`` (a state topic's, in log order: Kafka consumer records)."""
        log = cls()
        for record in records:
            log.add(record.key, record.value)
        return log

    def add(self, key: bytes | None, value: bytes | None) -> None:
        """Take one record of the state topic, in log order."""
        if not value:  # a tombstone: a delta the snapshot before it replaced
            name = (key or b"").decode("utf-8", "replace")
            trace_id, _, version = name.rpartition(DELTA_SEPARATOR)
            if version.isdigit() and trace_id in self.tails:
                self.tails[trace_id].live_keys.discard(name)
            return
        try:
            record = read_state(value)
        except DecodeError:
            self.skipped += 1
            return
        tail = self.tails.setdefault(record.trace_id, Tail())
        if isinstance(record, StateDelta):
            tail.deltas[record.base_version] = (record, len(value))
            tail.live_keys.add(delta_key(record.trace_id, record.version))
        elif tail.snapshot is None or _rank(record) >= _rank(tail.snapshot):
            tail.snapshot, tail.snapshot_bytes = record, len(value)
            tail.deltas = {b: d for b, d in tail.deltas.items() if d[0].version > record.version}

    def latest(self) -> dict[str, Snapshot]:
        """Each trace's newest state: its newest snapshot with the deltas after it folded."""
        return {
            trace_id: state
            for trace_id in self.tails
            if (state := self.state(trace_id)) is not None
        }

    def state(self, trace_id: str) -> Snapshot | None:
        """``trace_id``'s newest state, or None when the log holds no snapshot of it."""
        tail = self.tails.get(trace_id)
        if tail is None or tail.snapshot is None:
            return None
        return fold_deltas(tail.snapshot, (d for d, _ in tail.chain()))


def _rank(snapshot: Snapshot) -> tuple[int, bool]:
    """Newest first by version; at one version, an ended trace over a running one (finishing
    does not bump the version)."""
    return snapshot.version, snapshot.status != "running"
