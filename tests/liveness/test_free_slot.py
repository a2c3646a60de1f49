"""An agent whose every slot is busy takes its next record as soon as a step finishes.

While full, the agent pauses its partitions and keeps polling (tests/liveness/test_slow_steps.py);
a poll of paused partitions sleeps its whole timeout, so the loop must be woken by the step
that frees a slot, not by that timeout. Here the poll's timeout is ten minutes: records left
waiting for it would not be done within the test's wait.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
import yaml

from choreo.agent import service as agent_service
from choreo.agent.service import AgentService
from choreo.client import Client
from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import make_producer
from choreo.kafka.topics import ensure_topics
from choreo.observe.settings import Settings
from choreo.schemas import Envelope
from choreo.schemas.codec import encode
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh
from tests.liveness.support import Finish, one_agent_mesh

pytestmark = pytest.mark.integration

RECORDS = 4
WAIT_S = 120.0


def test_a_finished_step_frees_its_slot_at_once(
    broker: BrokerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_service, "POLL_MS", 600_000)
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(one_agent_mesh(tmp_path)))
    spec = load_mesh(path)
    settings = Settings(topic_prefix=f"slot{os.getpid()}", max_in_flight=1, session_timeout_ms=6000)
    topics = Topics(settings.topic_prefix)
    traces = [f"slot-{i}" for i in range(RECORDS)]

    async def run() -> set[str]:
        await ensure_topics(broker.bootstrap, topics, spec)
        async with (
            AgentService(
                spec, "solo", broker.bootstrap, settings, behaviour=lambda spec, agent: Finish()
            ) as agent,
            make_producer(broker.bootstrap, "slot-test") as producer,
        ):
            serving = asyncio.create_task(agent.run(asyncio.Event()))
            try:
                for trace_id in traces:
                    event = Envelope(
                        event_id=f"{trace_id}.task",
                        trace_id=trace_id,
                        type="task.received",
                        source="keeper",
                    )
                    await producer.send_and_wait(
                        topics.event("task.received"), encode(event), key=trace_id.encode()
                    )
                async with Client(broker.bootstrap, settings=settings) as client:
                    return await _finished(client, traces)
            finally:
                serving.cancel()  # its poll may wait the ten minutes: no clean stop
                await asyncio.gather(serving, return_exceptions=True)

    assert asyncio.run(run()) == set(traces)


async def _finished(client: Client, traces: list[str]) -> set[str]:
    """The traces whose step record is on the outbox, once all are or ``WAIT_S`` passed."""
    done: set[str] = set()
    deadline = time.monotonic() + WAIT_S
    while len(done) < len(traces) and time.monotonic() < deadline:
        for trace_id in set(traces) - done:
            if await client.steps(trace_id):
                done.add(trace_id)
        await asyncio.sleep(0.5)  # between reads of the outbox, not as synchronisation
    return done
