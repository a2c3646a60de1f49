"""A keeper alone, on the real broker in this process (choreo.testing), and the records around
it.

With no agent running, a test plays every agent itself: it writes the step records an agent
would write to the outbox, and reads what the keeper made of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import KafkaProducer

from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import read_topic
from choreo.observe.settings import Settings
from choreo.schemas import DeadLetter, Envelope, HopRecord, TerminalResult, decode, encode
from choreo.schemas.ids import new_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec
from choreo.testing import SyncMesh
from tests.conftest import EXAMPLES

WRITER_EDITOR = EXAMPLES / "writer-editor" / "mesh.yaml"


@dataclass
class LoneKeeper:
    """A mesh's keeper and none of its agents (``mesh``: a choreo.testing.SyncMesh), under a
    topic prefix of its own."""

    mesh: SyncMesh
    producer: KafkaProducer = field(init=False)

    def __post_init__(self) -> None:
        self.producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", max_request_size=4 * 1024 * 1024
        )

    @property
    def bootstrap(self) -> str:
        return self.mesh.bootstrap

    @property
    def settings(self) -> Settings:
        return self.mesh.settings

    @property
    def spec(self) -> MeshSpec:
        return self.mesh.spec

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_prefix)

    def produce(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.producer.send(topic, key=key, value=value).get(timeout=60)

    def step(
        self,
        trace_id: str,
        event_type: str,
        source: str,
        state_version: int,
        delta: dict[str, Any] | None = None,
        **payload: Any,
    ) -> Envelope:
        """Write the step record an agent ``source`` would write, and return it."""
        step = Envelope(
            event_id=new_id(),
            trace_id=trace_id,
            type=event_type,
            source=source,
            hop=state_version,
            state_version=state_version,
            delta=delta,
            payload=payload,
        )
        self.produce(self.topics.outbox, encode(step), trace_id.encode())
        return step

    def read(self, topic: str) -> list[Any]:
        return asyncio.run(read_topic(self.bootstrap, self.settings, topic))

    def results(self) -> dict[str, list[TerminalResult]]:
        found: dict[str, list[TerminalResult]] = {}
        for record in self.read(self.topics.results):
            result = decode(record.value, TerminalResult)
            found.setdefault(result.trace_id, []).append(result)
        return found

    def hops(self, trace_id: str) -> list[HopRecord]:
        hops = [decode(r.value, HopRecord) for r in self.read(self.topics.hops)]
        return [h for h in hops if h.trace_id == trace_id]

    def dead_letters(self) -> list[DeadLetter]:
        return [decode(r.value, DeadLetter) for r in self.read(self.topics.dlq)]

    def events(self, event_type: str) -> list[Envelope]:
        return [decode(r.value, Envelope) for r in self.read(self.topics.event(event_type))]

    def running(self) -> bool:
        """The keeper still runs: it did not end on its own."""
        return self.mesh.failure is None

    def stop(self) -> None:
        self.producer.close()
        self.mesh.close()


@pytest.fixture(scope="module")
def lone_keeper(broker: BrokerHandle) -> Iterator[LoneKeeper]:
    """One keeper for a test module: starting one costs a group join (~5 s)."""
    keeper = LoneKeeper(
        SyncMesh(
            WRITER_EDITOR, broker.bootstrap, agents=[], settings=Settings(session_timeout_ms=6000)
        )
    )
    yield keeper
    keeper.stop()
