"""Big state values by reference: a field value over a threshold travels as a reference to
content-addressed chunks on the blob topic (``<prefix>.blobs``), fetched and verified on read.

A value is encoded as JSON (choreo.schemas.codec.to_json) and cut into chunks of at most
``chunk_bytes``; each chunk is one record on the blob topic keyed by its SHA-256 (hex), and a
:class:`BlobRef` names the whole value's hash, its size and where each chunk lies
(partition, offset), so a reader fetches each with one seek. Fixed-size chunks from the start
of the encoding make a list grown at its end share every chunk but its last with the version
before it: the writer writes again only the chunks it has not written (choreo.keeper.blobs).

In a state dict a reference is an object with the key ``"$blob"`` (:data:`BLOB_KEY`) holding
a :class:`BlobRef`; a reader of the state log that folds a delta growing such a field before
fetching it adds ``"$extend"`` or ``"$merge"`` (:class:`Held`). An object with the key
``"$blob"`` and no keys but those three is reserved and never a user's value. This module is
pure: it splits, finds and joins; reading records is choreo.kafka.blobs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec

from choreo.schemas.codec import to_json
from choreo.schemas.errors import ChoreoError

#: The one key of a state value that is a reference.
BLOB_KEY = "$blob"
#: Items added at the end of a list by reference, and entries over an object by reference,
#: folded from deltas after it (:class:`Held`).
EXTEND_KEY = "$extend"
MERGE_KEY = "$merge"
_HELD_KEYS = {BLOB_KEY, EXTEND_KEY, MERGE_KEY}
#: A chunk's offset before the writer knows it: as wide as any real offset, so a record
#: measured with it is never smaller than with the real one.
UNPLACED = 2**62


class BlobMismatch(ChoreoError, ValueError):
    """A fetched chunk or value does not hash to what its reference says (a broken or
    tampered blob topic), or a chunk is missing; the message names the hash."""


class Chunk(msgspec.Struct, array_like=True):
    """One chunk of a value on the blob topic: its SHA-256 (hex), partition and offset."""

    sha256: str
    partition: int
    offset: int = UNPLACED


class BlobRef(msgspec.Struct, kw_only=True):
    """A value by reference: the SHA-256 (hex) and size in bytes of its JSON encoding, the
    blob topic, and its chunks in order."""

    sha256: str
    size: int
    topic: str
    chunks: list[Chunk]


def digest(data: bytes) -> str:
    """The SHA-256 of ``data``, hex: a chunk's key and a value's hash."""
    return hashlib.sha256(data).hexdigest()


def split(
    value: Any, chunk_bytes: int, topic: str, partition: int
) -> tuple[BlobRef, list[tuple[Chunk, bytes]]]:
    """``value`` as a reference (chunk offsets :data:`UNPLACED`) and its chunks with their
    bytes, each at most ``chunk_bytes`` (> 0), all for ``partition`` of ``topic``.

    Raises ``TypeError`` for a value JSON cannot hold (as encoding the state would)."""
    data = to_json(value)
    pieces = [data[at : at + chunk_bytes] for at in range(0, len(data), chunk_bytes)] or [b""]
    chunks = [(Chunk(digest(piece), partition), piece) for piece in pieces]
    return BlobRef(
        sha256=digest(data), size=len(data), topic=topic, chunks=[c for c, _ in chunks]
    ), chunks


def as_value(ref: BlobRef) -> dict[str, BlobRef]:
    """The state value standing for ``ref``."""
    return {BLOB_KEY: ref}


class Held(msgspec.Struct, frozen=True):
    """A state value held by reference, as a reader of the state log folds it: the value
    ``ref`` stands for, then ``extend`` added at its end (a list's) or ``merge`` over it (an
    object's), from the deltas folded after it (choreo.schemas.deltas)."""

    ref: BlobRef
    extend: list[Any] | None = None
    merge: dict[str, Any] | None = None

    def value(self, base: Any) -> Any:
        """The value held, from ``base`` (the value of ``ref``)."""
        if self.extend is not None:
            return [*base, *self.extend]
        if self.merge is not None:
            return {**base, **self.merge}
        return base


def is_ref(value: Any) -> bool:
    """True when ``value`` has the shape of a reference (an object with the key ``"$blob"``
    and no keys but those of :class:`Held`): reserved, never a value in state."""
    return type(value) is dict and BLOB_KEY in value and value.keys() <= _HELD_KEYS


def ref_of(value: Any) -> Held | None:
    """The reference ``value`` stands for, or None when it is a value itself."""
    if is_ref(value):
        inner = value[BLOB_KEY]
        ref = inner if isinstance(inner, BlobRef) else msgspec.convert(inner, BlobRef)
        return Held(ref, value.get(EXTEND_KEY), value.get(MERGE_KEY))
    return None


def refs_in(state: Mapping[str, Any]) -> Iterator[tuple[str, Held]]:
    """Each field of ``state`` that is a reference, with it."""
    for name, value in state.items():
        held = ref_of(value)
        if held is not None:
            yield name, held


def grown(
    current: dict[str, Any], items: list[Any] | None, entries: dict[str, Any] | None, *, own: bool
) -> dict[str, Any]:
    """A reference ``current`` (a state value) with ``items`` added at the end of its list or
    ``entries`` over its object, to be applied once its value is fetched: what folding a
    delta's change onto a value by reference gives. ``own``: ``current`` was made by this
    fold and may be changed in place (so folding n changes costs O(what they hold))."""
    held: dict[str, Any] = current if own else dict(current)
    if items is not None:
        extended: list[Any] = held.get(EXTEND_KEY) or []
        held[EXTEND_KEY] = extended if own and extended else list(extended)
        held[EXTEND_KEY].extend(items)
    if entries is not None:
        merged: dict[str, Any] = held.get(MERGE_KEY) or {}
        held[MERGE_KEY] = merged if own and merged else dict(merged)
        held[MERGE_KEY].update(entries)
    return held


def join(ref: BlobRef, chunk: Callable[[Chunk], bytes]) -> Any:
    """The value ``ref`` stands for, from its chunks' bytes (``chunk`` gives each one's).

    Raises :class:`BlobMismatch` when a chunk or the whole does not hash as ``ref`` says."""
    parts = []
    for c in ref.chunks:
        data = chunk(c)
        if digest(data) != c.sha256:
            raise BlobMismatch(f"blob chunk {c.sha256} does not hash to its key")
        parts.append(data)
    whole = b"".join(parts)
    if len(whole) != ref.size or digest(whole) != ref.sha256:
        raise BlobMismatch(f"blob {ref.sha256} does not hash to its reference")
    return msgspec.json.decode(whole)
