"""A running agent whose input partition was committed by another replica while it had lost
its producer (a failed transaction in a broker outage) does not write its step again.

The failover soak found a writer's ``draft.ready`` twice on the outbox (docs/BENCHMARKS.md,
run 5): the agent's retry started a new producer by itself, fencing the replica that had
taken the partition over, and committed the step that replica had committed already. Here the
agent's producer is dropped and the other replica's commit made before the agent runs the
task; the agent must then read the partition again from that commit rather than write its
own record of the step. tests/exactly_once/test_overtaken.py replays the same interleaving on
the parts of choreo.agent.outbox.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from choreo.agent.outbox import unit_of
from choreo.agent.service import AgentService
from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import make_producer, read_topic
from choreo.kafka.topics import ensure_topics
from choreo.kafka.transactions import Transactions, sends_of
from choreo.observe.settings import Settings
from choreo.schemas import Envelope
from choreo.schemas.codec import encode
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh
from tests.liveness.support import Finish, one_agent_mesh

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_an_agent_whose_partition_was_committed_meanwhile_does_not_write_its_step_again(
    transactional: BrokerHandle, tmp_path: Path
) -> None:
    bootstrap = transactional.bootstrap
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(one_agent_mesh(tmp_path)))
    spec = load_mesh(path)
    settings = Settings(topic_prefix=f"overtaken{uuid.uuid4().hex[:8]}", session_timeout_ms=6000)
    topics = Topics(settings.topic_prefix)
    tp = TopicPartition(topics.event("task.received"), 0)  # the mesh's one partition
    task = Envelope(event_id="t-1.task", trace_id="t-1", type="task.received", source="keeper")
    # what the other replica wrote for the step, committed with the offset past the task
    theirs = (topics.outbox, b"t-1", b"the other replica's record of the step", [])
    steps = {"agent": "solo", "status": "ok"}
    before = REGISTRY.get_sample_value("choreo_steps_total", steps) or 0.0

    async def until(done: Any, what: str) -> None:
        deadline = time.monotonic() + 60
        while not done():
            assert time.monotonic() < deadline, f"not within 60 s: {what}"
            await asyncio.sleep(0.1)  # between looks at the agent, not as synchronisation

    async def run() -> list[bytes]:
        await ensure_topics(bootstrap, topics, spec)
        other = Transactions(bootstrap, topics.agent_group("solo"), "test-other-replica")
        async with (
            AgentService(
                spec, "solo", bootstrap, settings, behaviour=lambda s, a: Finish()
            ) as agent,
            make_producer(bootstrap, "test-overtaken") as producer,
        ):
            serving = asyncio.create_task(agent.run(asyncio.Event()))
            try:
                await until(lambda: tp in agent.taken, "the agent owns the partition")
                assert agent.transactions is not None
                # Its last transaction failed in an outage, which dropped its producer; the
                # group gave the partition to another replica meanwhile, which fenced it and
                # committed the task's step, before this agent ran the task itself.
                await agent.transactions.release([unit_of(tp)])
                await other.own([unit_of(tp)])
                await other.run(unit_of(tp), sends_of([theirs]), {tp: 1})
                await producer.send_and_wait(tp.topic, encode(task), key=b"t-1", partition=0)
                await until(
                    lambda: (
                        (REGISTRY.get_sample_value("choreo_steps_total", steps) or 0) > before
                        and not agent.offsets.in_flight()
                        and not agent.offsets.committable()
                    ),
                    "the agent ran the task and committed or dropped its step",
                )
            finally:
                serving.cancel()
                await asyncio.gather(serving, return_exceptions=True)
                await other.close()
        records = await read_topic(bootstrap, settings, topics.outbox)  # read_committed
        return [r.value for r in records if r.value is not None]

    assert asyncio.run(run()) == [theirs[2]]
