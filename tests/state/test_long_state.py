"""A trace whose state outgrows the broker's record limit still runs to its end: the state log
holds deltas between full snapshots, each under the limit, and a keeper that takes over midway
restores the trace from the newest snapshot and the deltas after it (docs/ARCHITECTURE.md,
"Long traces")."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import pytest

from choreo.agent.service import AgentService
from choreo.bench.long import long_mesh
from choreo.client import Client
from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import read_topic
from choreo.kafka.limits import HEADROOM
from choreo.kafka.topics import ensure_topics
from choreo.keeper.replay import history
from choreo.keeper.service import KeeperService
from choreo.observe.settings import Settings
from choreo.schemas import Task
from choreo.schemas.ids import new_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, parse_mesh
from tests.processes.test_long_trace import fetched, live_versions
from tests.state.test_services_in_one_loop import _first

pytestmark = pytest.mark.integration
T = TypeVar("T")

STEPS = 300
WIDTH = 4096  # 300 lines of 4 KB: 1.2 MB of state, over the broker's 1 MiB limit
WAIT_S = 240.0
TRACE = "long-state"


async def _hops(client: Client, trace_id: str, at_least: int) -> None:
    """Once the trace has ``at_least`` hop records (the hops topic, polled: the only sign of
    a step another process can see)."""
    async with asyncio.timeout(WAIT_S):
        while len(await client.hops(trace_id)) < at_least:  # noqa: ASYNC110
            await asyncio.sleep(0.5)


async def _given(value: str) -> str:
    return value


async def _keeper_until(
    spec: MeshSpec,
    bootstrap: str,
    settings: Settings,
    others: list[asyncio.Task[None]],
    start: Awaitable[str],
    until: Callable[[str], Awaitable[T]],
) -> T:
    """Run a keeper from ``start`` (which gives the trace id) until ``until`` gives a value;
    then stop it, as a keeper leaves when its partitions go to another."""
    stop = asyncio.Event()
    async with KeeperService(spec, bootstrap, settings) as keeper:
        running = asyncio.create_task(keeper.run(stop))
        try:
            trace_id = await start
            return await _first(until(trace_id), [*others, running])  # type: ignore[no-any-return]
        finally:
            stop.set()
            await running


def test_a_state_past_the_record_limit_runs_to_its_end_across_a_keeper_takeover(
    broker: BrokerHandle,
) -> None:
    asyncio.run(_scenario(broker.bootstrap))


async def _scenario(bootstrap: str) -> None:
    spec = parse_mesh(long_mesh())
    settings = Settings(topic_prefix=f"long{os.getpid()}x{new_id()[:8]}", session_timeout_ms=6000)
    task = Task(input="write", trace_id=TRACE, initial_state={"goal": STEPS, "width": WIDTH})
    await ensure_topics(bootstrap, Topics(settings.topic_prefix), spec)
    async with Client(bootstrap, settings=settings) as client:
        stop = asyncio.Event()
        async with AgentService(spec, "writer", bootstrap, settings) as agent:
            agent_task = asyncio.create_task(agent.run(stop))
            try:
                await _keeper_until(
                    spec,
                    bootstrap,
                    settings,
                    [agent_task],
                    client.submit(task),
                    lambda t: _hops(client, t, STEPS // 2),
                )
                result = await _keeper_until(
                    spec,
                    bootstrap,
                    settings,
                    [agent_task],
                    _given(TRACE),
                    lambda t: client.wait(t, WAIT_S),
                )
            finally:
                stop.set()
                await agent_task
        assert (result.status, result.output) == ("completed", STEPS), result.reason
        limit = settings.max_record_bytes - HEADROOM

    topics = client.topics
    state = await read_topic(bootstrap, settings, topics.state)
    assert all(len(r.value or b"") <= limit for r in state)  # the state is not: 1.2 MB
    outbox = await read_topic(bootstrap, settings, topics.outbox)
    versions = history(spec, topics, outbox, TRACE)
    published = await fetched(bootstrap, settings, live_versions(state, TRACE))
    for live in published:
        assert msgspec.to_builtins(versions[live.version - 1]) == msgspec.to_builtins(live)
    running = [s for s in published if s.status == "running"]
    assert len(running[-1].fields["log"]) == STEPS - 1  # every line, past the limit
    assert len(msgspec.json.encode(running[-1].fields)) > limit
