"""Per-field digests of a trace's state, kept from step to step so a step costs O(its delta).

A hop record carries three hashes of the state (choreo.schemas.records.HopRecord): the state's
content hash, each field's shape hash, and the shape hash of what the agent read. Computed
from scratch they walk the whole state, every step, with a regular expression over every
string (choreo.schemas.shapes): a trace that appends a 2 KB line per step pays for all its
lines again at every step. A :class:`FieldDigest` keeps a field's hashes with the value they
digest; the next step reuses the digest of every field it did not write, and of a list it
grew at the end (``append``, ``extend``: the old items are the very same objects) it digests
only the new items. Any other value is digested again from scratch, so a digest is always
that of the value it is used for, whatever changed it.

A list's hashes are built from its items' hashes: its content hash chains them in order
(``h = H(h + item)``), its situation hash chains their shapes in order, and its field shape
is the hash of the *set* of its items' shapes (choreo.schemas.shapes.field_shape).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import msgspec

from choreo.schemas.codec import to_json
from choreo.schemas.ids import fingerprint
from choreo.schemas.shapes import shape_hash

_sorted_json = msgspec.json.Encoder(order="sorted")
_EMPTY_CHAIN = fingerprint(b"[]")


@dataclass(frozen=True)
class FieldDigest:
    """The hashes of one field's value, and that value (kept to recognise it next step).

    ``content`` changes with any change of the value; ``situation`` with any change of its
    shape (numbers, ids and timestamps normalised away, order kept); ``shape`` is the hop
    record's field hash (a list's is the set of its items' shapes, order and repeats left out).
    """

    value: Any
    content: str
    situation: str
    shape: str
    #: The value's size as JSON, in bytes (``choreo.schemas.codec.to_json``).
    size: int
    #: A list's item shapes (the set ``shape`` hashes); empty for other values.
    items: frozenset[str] = frozenset()


def digest(value: Any, previous: FieldDigest | None = None) -> FieldDigest:
    """The digest of ``value``; from ``previous`` (the same field's last digest) when it is
    the same value, or that list with items added at the end."""
    if previous is not None and previous.value is value:
        return previous
    if not isinstance(value, list):
        value_shape = shape_hash(value)
        return FieldDigest(
            value,
            fingerprint(_sorted_json.encode(value)),
            value_shape,
            value_shape,
            len(to_json(value)),
        )
    old = previous.value if previous is not None else None
    if isinstance(old, list) and len(old) <= len(value) and all(map(operator.is_, old, value)):
        assert previous is not None
        return _extend(previous, value, len(old))
    return _extend(FieldDigest([], _EMPTY_CHAIN, _EMPTY_CHAIN, _set_hash(frozenset()), 2), value, 0)


def _extend(base: FieldDigest, value: list[Any], start: int) -> FieldDigest:
    """``base`` (the digest of ``value[:start]``) with the items from ``start`` on added."""
    content, situation, items = base.content, base.situation, set(base.items)
    size = base.size
    for index, item in enumerate(value[start:], start):
        item_shape = shape_hash(item)
        content = _chain(content, fingerprint(_sorted_json.encode(item)))
        situation = _chain(situation, item_shape)
        items.add(item_shape)
        size += len(to_json(item)) + (
            1 if index else 0
        )  # "[a,b]": a comma before each but the first
    frozen = frozenset(items)
    shape = base.shape if frozen == base.items else _set_hash(frozen)
    return FieldDigest(value, content, situation, shape, size, frozen)


def _chain(head: str, item: str) -> str:
    return fingerprint(f"{head}\n{item}".encode())


def _set_hash(items: frozenset[str]) -> str:
    return fingerprint(_sorted_json.encode(sorted(items)))


class StateDigest:
    """The digests of one trace's fields, updated from one state to the next."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldDigest] = {}

    def update(self, fields: dict[str, Any]) -> dict[str, FieldDigest]:
        """The digests of ``fields`` (one state of the trace); remembered for the next."""
        self.fields = {name: digest(value, self.fields.get(name)) for name, value in fields.items()}
        return self.fields

    def of(self, fields: dict[str, Any]) -> dict[str, FieldDigest]:
        """The digests of ``fields`` without remembering them (a state the trace left)."""
        return {name: digest(value, self.fields.get(name)) for name, value in fields.items()}


def fields_size(digests: dict[str, FieldDigest]) -> int:
    """The size in bytes of the fields as one JSON object: ``{"name":value,...}``."""
    entries = sum(len(to_json(name)) + 1 + d.size for name, d in digests.items())
    return 2 + entries + max(0, len(digests) - 1)


def state_hash(digests: dict[str, FieldDigest]) -> str:
    """The state's content hash, independent of key order: the watchdog's notion of progress."""
    return fingerprint(
        "\n".join(f"{name}={d.content}" for name, d in sorted(digests.items())).encode()
    )


def field_hashes(digests: dict[str, FieldDigest]) -> dict[str, str]:
    """Each field's shape hash, for hop records."""
    return {name: d.shape for name, d in digests.items()}


_ABSENT = digest(None)


def situation(digests: dict[str, FieldDigest], reads: list[str] | None) -> str:
    """The shape hash of the fields in ``reads`` (every field when ``None``), a field absent
    counting as ``null``: the watchdog's notion of "the same situation again"."""
    names = sorted(digests) if reads is None else sorted(set(reads))
    return fingerprint(
        "\n".join(f"{n}={digests.get(n, _ABSENT).situation}" for n in names).encode()
    )
