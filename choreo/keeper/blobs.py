"""The keeper's side of big values by reference (choreo.schemas.blobs): which state values go
as references, and the chunks to write before the records that name them.

The keeper is the one writer of state, so it is the one writer of the blob topic. A record it
queues (a forwarded event, a full snapshot, a delta) has each state value whose JSON is over
``threshold`` bytes replaced by a reference; the chunks not yet written for the trace are
queued on the :class:`Blobs` and written, and their offsets learnt, before any record naming
them (choreo.keeper.service). Until then a reference holds :data:`UNPLACED` offsets, as wide
as any real one, so a record measured against the record limit never grows when placed
(:func:`placed`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from choreo.kafka.clients import partition_for
from choreo.schemas.blobs import UNPLACED, BlobRef, Chunk, Held, as_value, split
from choreo.schemas.codec import to_json

#: The default threshold, in bytes: values over it go by reference, in chunks of this size.
DEFAULT_BLOB_BYTES = 64 * 1024

#: A chunk to write before the records naming it: (trace id, chunk, its bytes).
Pending = tuple[str, Chunk, bytes]

_UNPLACED_TAIL = str(UNPLACED).encode()
_UNPLACED_CHUNK = re.compile(rb'"([0-9a-f]{64})",(\d+),' + _UNPLACED_TAIL)


@dataclass
class _Trace:
    """One trace's chunks written (sha256 -> offset on its partition) and its last reference
    per field with the value it stands for, so an unchanged value is not encoded again."""

    offsets: dict[str, int] = field(default_factory=dict)
    refs: dict[str, tuple[Any, BlobRef]] = field(default_factory=dict)


@dataclass
class Blobs:
    """Values over ``threshold`` bytes (JSON) of each trace's state, as references to chunks
    of ``threshold`` bytes on ``topic``, each written to its trace's partition number (of
    ``partitions``)."""

    topic: str
    threshold: int = DEFAULT_BLOB_BYTES
    #: Partitions of the blob topic (those of the keeper's topics); a trace's chunks go to
    #: its own partition number.
    partitions: int = 1
    _traces: dict[str, _Trace] = field(default_factory=dict)

    def fields(
        self, trace_id: str, values: Mapping[str, Any], pending: list[Pending]
    ) -> dict[str, Any]:
        """``values`` with each value over the threshold replaced by its reference; chunks
        to write are added to ``pending``."""
        return {name: self.value(trace_id, name, v, pending) for name, v in values.items()}

    def value(self, trace_id: str, name: str, value: Any, pending: list[Pending]) -> Any:
        """``value`` of field ``name``, or its reference when its JSON is over the threshold;
        chunks of it not written yet for the trace are added to ``pending``.

        The same value object as last time gives the same reference without encoding it
        (reducers never change a value in place, docs/ARCHITECTURE.md "Long traces")."""
        trace = self._traces.setdefault(trace_id, _Trace())
        last = trace.refs.get(name)
        if last is not None and last[0] is value:
            return as_value(self._placed(trace, last[1]))
        if not big(value, self.threshold):
            return value
        partition = partition_for(trace_id, max(self.partitions, 1))
        ref, chunks = split(value, self.threshold, self.topic, partition)
        queued = {c.sha256 for t, c, _ in pending if t == trace_id}
        for chunk, data in chunks:
            if chunk.sha256 not in trace.offsets and chunk.sha256 not in queued:
                queued.add(chunk.sha256)
                pending.append((trace_id, chunk, data))
        trace.refs[name] = (value, ref)
        return as_value(self._placed(trace, ref))

    @staticmethod
    def _placed(trace: _Trace, ref: BlobRef) -> BlobRef:
        for chunk in ref.chunks:
            if chunk.offset == UNPLACED and chunk.sha256 in trace.offsets:
                chunk.offset = trace.offsets[chunk.sha256]
        return ref

    def place(self, trace_id: str, sha256: str, offset: int) -> None:
        """Note that ``trace_id``'s chunk ``sha256`` is written at ``offset``."""
        self._traces.setdefault(trace_id, _Trace()).offsets[sha256] = offset

    def known(self, trace_id: str, name: str, value: Any, held: Held) -> None:
        """Note that field ``name`` of ``trace_id`` holds ``value``, read back from the state
        log through ``held``: its chunks are not written again, nor, while the field holds
        ``value`` and ``held`` has nothing to add to its reference, the value."""
        trace = self._traces.setdefault(trace_id, _Trace())
        if held.extend is None and held.merge is None:
            trace.refs[name] = (value, held.ref)
        trace.offsets.update((c.sha256, c.offset) for c in held.ref.chunks)

    def forget(self, trace_id: str) -> None:
        """Drop what is known of ``trace_id``'s chunks (it ended, or its partition moved, or
        a batch failed: a chunk whose write is not certain is written again)."""
        self._traces.pop(trace_id, None)


def big(value: Any, threshold: int) -> bool:
    """True when ``value``'s JSON is over ``threshold`` bytes; strings and scalars are
    measured without encoding when they cannot be."""
    if isinstance(value, str):
        if len(value) * 6 + 2 <= threshold:  # at most 6 bytes a character (\u001f)
            return False
    elif not isinstance(value, list | dict):
        return False
    return len(to_json(value)) > threshold


def placed(value: bytes, offsets: Mapping[tuple[str, int], int]) -> bytes:
    """An encoded record ``value`` with each :data:`UNPLACED` chunk offset it names replaced
    by the chunk's offset in ``offsets`` (by sha256 and partition); a chunk not there keeps
    it.

    Safe on the bytes: inside a JSON string a quote is escaped, so the pattern
    ``"<sha256>",<partition>,<UNPLACED>`` only matches a reference's chunk."""
    if _UNPLACED_TAIL not in value:
        return value

    def offset(match: re.Match[bytes]) -> bytes:
        found = offsets.get((match[1].decode(), int(match[2])))
        return match[0] if found is None else match[0][: -len(_UNPLACED_TAIL)] + b"%d" % found

    return _UNPLACED_CHUNK.sub(offset, value)
