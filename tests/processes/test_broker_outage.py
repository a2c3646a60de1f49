"""A broker that stalls mid-flight: every service waits it out and every task ends exactly once.

The broker is stopped (SIGSTOP) for longer than a produce request's timeout while tasks are in
flight, then resumed (SIGCONT). The model answers slowly enough that the agents are still
working through the batch when the broker stops, so tasks really do cross the stall. Before,
the keeper's first unacknowledged produce raised out of its loop, the keeper exited for good
and the tasks in flight never ended.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer

from choreo.kafka.broker import ApacheKafka, BrokerHandle, EmbeddedBroker, broker_kind
from choreo.kafka.clients import make_consumer
from choreo.local.launch import start_mesh
from choreo.observe.settings import Settings
from choreo.schemas import Task, encode
from choreo.spec.mesh import load_mesh
from tests.conftest import ProcessMesh
from tests.liveness_keeper.support import WRITER_EDITOR

pytestmark = pytest.mark.integration

#: Well past aiokafka's request timeout (40 s): produces and commits time out for real.
STALL_S = 60
#: Per model call: 100 tasks of three writer calls each keep the writer busy for about 30 s,
#: so the stall starts while the batch is in flight.
MODEL_LATENCY_MS = 100


def submit_many(mesh: ProcessMesh, count: int) -> list[str]:
    """Submit ``count`` tasks at once, so many are in flight when the broker stalls."""
    producer = KafkaProducer(bootstrap_servers=mesh.bootstrap, acks="all")
    traces = [f"stall-{uuid.uuid4()}" for _ in range(count)]
    for n, trace_id in enumerate(traces):
        producer.send(
            mesh.topics.tasks,
            key=trace_id.encode(),
            value=encode(Task(input=f"task {n}", trace_id=trace_id)),
        )
    producer.flush(timeout=60)
    producer.close()
    return traces


def slow_writer_editor(folder: Path) -> Path:
    """The writer/editor example copied to ``folder``, its model answering in 100 ms."""
    shutil.copytree(WRITER_EDITOR.parent, folder)
    script = folder / "model.yaml"
    text = script.read_text()
    assert "latency_ms: 25" in text
    script.write_text(text.replace("latency_ms: 25", f"latency_ms: {MODEL_LATENCY_MS}"))
    return folder / "mesh.yaml"


@pytest.fixture
def own_broker(broker: BrokerHandle) -> Iterator[EmbeddedBroker | ApacheKafka]:
    """A broker of this test's own, since it is stopped for a while; of the session broker's
    kind (Apache Kafka when the suite runs on it), so the stall is met on each."""
    own = ApacheKafka() if broker_kind(broker.bootstrap) == "kafka" else EmbeddedBroker()
    own.start()
    yield own
    own.stop()


@pytest.mark.timeout(900)
def test_every_task_ends_once_across_a_broker_stall(
    own_broker: EmbeddedBroker | ApacheKafka, tmp_path: Path
) -> None:
    settings = Settings(topic_prefix="stall", session_timeout_ms=6000)
    env = {
        "CHOREO_TOPIC_PREFIX": "stall",
        "CHOREO_SESSION_TIMEOUT_MS": "6000",
        "CHOREO_LOG_LEVEL": "INFO",
        "CHOREO_BROKER_OUTAGE_S": "600",
    }
    mesh_path = slow_writer_editor(tmp_path / "mesh")
    spec = load_mesh(mesh_path)
    group = start_mesh(
        spec, mesh_path, own_broker.bootstrap, settings, tmp_path, watchdog=False, env=env
    )
    with ProcessMesh(spec, mesh_path, own_broker.bootstrap, settings, group) as mesh:
        first = mesh.submit("before the stall")
        mesh.result(first, timeout=120)  # every service has joined its group
        traces = submit_many(mesh, 100)  # the agents are working through them as it stops
        assert own_broker._process is not None
        pid = own_broker._process.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(STALL_S)  # the fault itself: the broker answers nothing for this long
        finally:
            os.kill(pid, signal.SIGCONT)
            resumed = datetime.now(UTC)
        results = [mesh.result(trace_id, timeout=300) for trace_id in traces]
        assert [r.status for r in results] == ["completed"] * len(traces)
        # the stall was met for real: work that was in flight when it began ended after it
        assert any(r.finished_at > resumed for r in results)
        barrier = mesh.submit("after the stall")
        mesh.result(barrier, timeout=120)
        for trace_id in [first, *traces]:
            assert len(mesh.results(trace_id)) == 1, trace_id
        assert group.failed() == [], [c.name for c in group.failed()]


def test_a_metadata_read_waits_out_a_broker_restart(
    own_broker: EmbeddedBroker | ApacheKafka,
) -> None:
    """A client asking for the topics while its broker restarts gets them once it is back,
    not an error on the first refused connection: every query of the CLI starts with one,
    and `choreo result` run across a broker stall used to fail on it."""
    settings = Settings(topic_prefix="restart")

    async def topics_across_a_restart() -> set[str]:
        consumer = make_consumer(own_broker.bootstrap, settings, group_id=None, client_id="reader")
        await consumer.start()
        try:
            own_broker.stop()
            refresh = asyncio.create_task(consumer.topics())
            await asyncio.to_thread(own_broker.start)  # the same port; the refresh runs meanwhile
            return await refresh
        finally:
            await consumer.stop()

    assert isinstance(asyncio.run(topics_across_a_restart()), set)
