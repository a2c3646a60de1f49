"""A keeper alone, as its own process on the real broker, and the records around it.

With no agent running, a test plays every agent itself: it writes the step records an agent
would write to the outbox, and reads what the keeper made of them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import read_topic
from choreo.local.launch import create_topics
from choreo.local.processes import Child, ProcessGroup
from choreo.observe.settings import Settings
from choreo.schemas import DeadLetter, Envelope, HopRecord, TerminalResult, decode, encode
from choreo.schemas.ids import new_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh
from tests.conftest import EXAMPLES

WRITER_EDITOR = EXAMPLES / "writer-editor" / "mesh.yaml"


@dataclass
class LoneKeeper:
    """A keeper process for ``spec`` under its own topic prefix."""

    spec: MeshSpec
    path: Path
    bootstrap: str
    settings: Settings
    group: ProcessGroup
    producer: KafkaProducer = field(init=False)

    def __post_init__(self) -> None:
        self.producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", max_request_size=4 * 1024 * 1024
        )

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_prefix)

    @property
    def process(self) -> Child:
        return self.group.find("keeper")

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
        return self.process.status == "running"

    def stop(self) -> None:
        self.producer.close()
        self.group.stop()


def start_keeper(
    broker: BrokerHandle,
    log_dir: Path,
    path: Path = WRITER_EDITOR,
    env: dict[str, str] | None = None,
) -> LoneKeeper:
    prefix = f"lk{os.getpid()}x{new_id()[:8]}"
    settings = Settings(topic_prefix=prefix, session_timeout_ms=6000)
    spec = load_mesh(path)
    create_topics(spec, broker.bootstrap, settings)
    group = ProcessGroup(
        log_dir,
        env={
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
            "CHOREO_TOPIC_PREFIX": prefix,
            "CHOREO_SESSION_TIMEOUT_MS": "6000",
            "CHOREO_LOG_LEVEL": "INFO",
            **(env or {}),
        },
    )
    group.start_choreo("keeper", ["run", "keeper", "--mesh", str(path)])
    return LoneKeeper(spec, path, broker.bootstrap, settings, group)


@pytest.fixture(scope="module")
def lone_keeper(
    broker: BrokerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoneKeeper]:
    """One keeper for a test module: starting one costs a group join (~5 s)."""
    keeper = start_keeper(broker, tmp_path_factory.mktemp("keeper-logs"))
    yield keeper
    keeper.stop()
