"""Drive a keeper in-process over a log it could have read from Kafka: the same records, the
same order, the same timestamps. Used by the unit and property tests of the state model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka.structs import ConsumerRecord

from choreo.keeper.batch import Batch
from choreo.keeper.machine import Keeper
from choreo.schemas import Envelope, Snapshot, StateConflict, Task, TerminalResult, decode, encode
from choreo.schemas.ids import derive_event_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, parse_mesh
from tests.unit.support import consumed

TOPICS = Topics("unit")
AGENTS = ("alpha", "beta", "gamma")
START_MS = 1_700_000_000_000

#: Every reducer, both replace policies, and a join that fires on the third ``work.done``.
FIELDS: dict[str, dict[str, Any]] = {
    "log": {"reducer": "append"},
    "items": {"reducer": "extend"},
    "n": {"reducer": "add", "default": 0},
    "hi": {"reducer": "max"},
    "lo": {"reducer": "min"},
    "tags": {"reducer": "set_union"},
    "doc": {"reducer": "merge"},
    "deep": {"reducer": "merge_deep"},
    "longest": {"reducer": "tests.state.user_reducers:longest"},
    "lww": {"reducer": "replace"},
    "fww": {"reducer": "replace", "conflict": "first_writer_wins"},
    "strict": {"reducer": "replace", "conflict": "reject"},
    "notes": {"reducer": "append", "scratch": True},
}


def mesh(**overrides: Any) -> MeshSpec:
    """A mesh whose agents all answer one entry event type; the join meets their outputs."""
    agent = {
        "subscribe": ["work.requested"],
        "persona": "p",
        "model": "m",
        "routes": [{"emit": "work.done"}],
    }
    data: dict[str, Any] = {
        "name": "unit",
        "entry": ["work.requested"],
        "state": FIELDS,
        "models": {"m": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}},
        "agents": [
            *({"name": n, **agent} for n in AGENTS),
            {
                "name": "closer",
                "subscribe": ["wrap.requested"],
                "persona": "p",
                "model": "m",
                "routes": [{"finish": True, "output": "lww"}],
            },
        ],
        "joins": [{"name": "all", "wait_for": "work.done", "count": 3, "emit": "wrap.requested"}],
    }
    data.update(overrides)
    return parse_mesh(data)


def record(topic: str, key: str, value: bytes, offset: int) -> ConsumerRecord[bytes, bytes]:
    """A record as a consumer returns it; each one a millisecond after the previous."""
    return consumed(topic, offset, value, key=key, timestamp_ms=START_MS + offset)


@dataclass
class Outbox:
    """One partition of the outbox, built as the keeper and the agents would write it."""

    records: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)

    def write(self, envelope: Envelope) -> ConsumerRecord[bytes, bytes]:
        rec = record(TOPICS.outbox, envelope.trace_id, encode(envelope), len(self.records))
        self.records.append(rec)
        return rec

    def admit(self, spec: MeshSpec, trace_id: str, **task: Any) -> None:
        """What the keeper logs for a task: its ``trace.admit`` record."""
        batch = Batch()
        submitted = record(
            TOPICS.tasks,
            trace_id,
            encode(Task(input=f"task {trace_id}", trace_id=trace_id, **task)),
            0,
        )
        assert Keeper(spec, TOPICS).intake(submitted, batch) is None
        ((_, _, value, _),) = batch.sends
        self.write(decode(value, Envelope))


def step(
    trace_id: str,
    agent: str,
    index: int,
    read: int,
    delta: dict[str, Any],
    event_type: str = "work.done",
) -> Envelope:
    """Step ``index`` of ``agent``, built on version ``read``; its id is stable per step."""
    return Envelope(
        event_id=derive_event_id(f"{trace_id}/{agent}", agent, index),
        trace_id=trace_id,
        type=event_type,
        source=agent,
        hop=index + 1,
        state_version=read,
        delta=delta,
    )


def run(
    spec: MeshSpec, records: Iterable[ConsumerRecord[bytes, bytes]], keeper: Keeper | None = None
) -> tuple[Keeper, Batch]:
    """Apply ``records`` in order; return the keeper and everything it sent."""
    keeper = keeper or Keeper(spec, TOPICS)
    batch = Batch()
    for rec in records:
        keeper.apply(rec, batch)
    return keeper, batch


def sent(batch: Batch, topic: str) -> list[bytes]:
    return [value for t, _, value, _ in batch.sends + batch.last if t == topic]


def conflicts(batch: Batch) -> list[StateConflict]:
    return [decode(v, StateConflict) for v in sent(batch, TOPICS.conflicts)]


def results(batch: Batch) -> list[TerminalResult]:
    return [decode(v, TerminalResult) for v in sent(batch, TOPICS.results)]


def plain(snapshot: Snapshot) -> Any:
    return msgspec.to_builtins(snapshot)
