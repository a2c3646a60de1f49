"""Bad records of every kind a shared Kafka topic sees, generated from a seed.

Each record says whether the mesh must accept it (a valid task: exactly one terminal record)
or refuse it (exactly one dead letter, with a reason). "Valid" is the contract's own
definition: the key is UTF-8 and the value decodes as the record type and encodes again.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from choreo.schemas import DecodeError, Record, decode, encode


@dataclass(frozen=True)
class Fuzzed:
    key: bytes | None
    value: bytes | None
    valid: bool
    kind: str


def _value(rng: random.Random, kind: str, n: int) -> tuple[Any, bytes | None]:
    """One value of ``kind``: (a JSON-able object or None, raw bytes)."""
    if kind == "random bytes":
        return None, rng.randbytes(rng.randrange(0, 300))
    if kind == "tombstone":
        return None, None
    if kind == "wrong type":
        return rng.choice(
            [
                {"input": n},
                {"input": [str(n)]},
                [n],
                f"task {n}",
                n,
                None,
                {"input": "x", "budget": "lots"},
                {"input": "x", "metadata": [1]},
                {"input": "x", "budget": {"max_hops": -n - 1}},
                {"input": "x", "budget": {"max_seconds": 0}},
                {"event_id": n, "trace_id": None},
            ]
        ), None
    if kind == "huge field":
        return {"inptu": "h" * rng.randrange(200_000, 900_000), "n": n}, None
    if kind == "bad utf-8":
        return None, b'{"input": "caf\xe9 \xff\xfe ' + str(n).encode() + b'"}'
    if kind == "lone surrogate":
        return None, b'{"input": "cut emoji \\ud83d #' + str(n).encode() + b'"}'
    if kind == "deep nesting":
        depth = rng.randrange(2_000, 20_000)
        return None, b'{"input": "deep", "metadata": {"x": ' + b"[" * depth + b"]" * depth + b"}}"
    if kind == "unknown fields":
        return {
            "input": f"unknown fields {n}",
            "priority": rng.randrange(9),
            "x-team": {"a": [1, 2]},
        }, None
    if kind == "valid":
        return {"input": f"valid task {n}"}, None
    raise ValueError(kind)


KINDS = [
    "random bytes",
    "tombstone",
    "wrong type",
    "huge field",
    "bad utf-8",
    "lone surrogate",
    "deep nesting",
    "unknown fields",
    "valid",
]
#: Relative frequencies: huge fields are few (each costs ~1 MB on the broker).
WEIGHTS = [30, 5, 30, 1, 10, 10, 5, 5, 4]


def fuzz(
    rng: random.Random,
    count: int,
    record_type: type[Record],
    kinds: list[str] = KINDS,
    weights: list[int] = WEIGHTS,
) -> list[Fuzzed]:
    """``count`` records for a topic of ``record_type``, keyed by a fresh id (some not UTF-8)."""
    records = []
    for n in range(count):
        kind = rng.choices(kinds, weights)[0]
        obj, raw = _value(rng, kind, n)
        value = raw if raw is not None or kind == "tombstone" else json.dumps(obj).encode()
        key = f"fuzz-{rng.getrandbits(64):016x}-{n}".encode()
        if rng.random() < 0.05:
            key = b"\xff\xfe" + key  # not UTF-8
        records.append(Fuzzed(key, value, _valid(key, value, record_type), kind))
    return records


def _valid(key: bytes | None, value: bytes | None, record_type: type[Record]) -> bool:
    if key is not None:
        try:
            key.decode("utf-8")
        except UnicodeDecodeError:
            return False
    try:
        encode(decode(value or b"", record_type))
    except (DecodeError, UnicodeError, TypeError, ValueError, RecursionError):
        return False
    return True
