"""A mesh's services are objects you can hold: several run in one event loop, no process.

The keeper and both agents of examples/writer-editor are entered with ``async with`` in the
test's own event loop against the session broker, twice over under two topic prefixes, the
scripted model served from a thread of the same process; each mesh's task gets its one
completed result. The watchdog runs the same way. A service whose start fails stops whatever
it had started before it raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from choreo.agent.service import AgentService
from choreo.client import Client
from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import make_producer, read_topic
from choreo.kafka.topics import ensure_topics
from choreo.keeper.service import KeeperService
from choreo.model_server.server import ScriptedModel
from choreo.observe.settings import Settings
from choreo.schemas import ControlVerdict, TerminalResult, decode, encode
from choreo.schemas.ids import new_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh, parse_mesh
from choreo.tools.imports import ImportPathError
from choreo.watchdog.app import WatchdogService
from tests.conftest import EXAMPLES
from tests.watchdog.test_watchdog_service import MESH, looping

pytestmark = pytest.mark.integration

WRITER_EDITOR = EXAMPLES / "writer-editor"
WAIT_S = 90.0


def _settings() -> Settings:
    return Settings(topic_prefix=f"loop{os.getpid()}x{new_id()[:8]}", session_timeout_ms=6000)


def _served_by(spec: MeshSpec, url: str) -> MeshSpec:
    """``spec`` with its scripted tier pointed at ``url``: per mesh, not per process."""
    tier = spec.models["scripted"].model_copy(update={"base_url": url})
    return spec.model_copy(update={"models": {**spec.models, "scripted": tier}})


async def _first(outcome: Awaitable[Any], services: list[asyncio.Task[None]]) -> Any:
    """What ``outcome`` gives; a service that ends before it fails the test with its error."""
    waiting = asyncio.ensure_future(outcome)
    done, _ = await asyncio.wait([waiting, *services], return_when=asyncio.FIRST_COMPLETED)
    if waiting not in done:
        waiting.cancel()
        ended = next(iter(done))
        raise AssertionError(f"a service ended while the task ran: {ended.exception()!r}")
    return waiting.result()


@contextlib.asynccontextmanager
async def _running(
    spec: MeshSpec, bootstrap: str, settings: Settings, stop: asyncio.Event
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """The keeper and every agent of ``spec``, entered and running in this event loop until
    the block ends; then stopped, drained and closed. They are entered at once: entering a
    consumer service joins its group, seconds each on the embedded broker."""
    async with contextlib.AsyncExitStack() as stack:
        services: list[KeeperService | AgentService] = [
            KeeperService(spec, bootstrap, settings),
            *(AgentService(spec, agent.name, bootstrap, settings) for agent in spec.agents),
        ]
        await asyncio.gather(*(stack.enter_async_context(s) for s in services))
        running = [asyncio.create_task(service.run(stop)) for service in services]
        try:
            yield running
        finally:
            stop.set()
            await asyncio.gather(*running)


async def _one_task(
    bootstrap: str, settings: Settings, running: list[asyncio.Task[None]]
) -> tuple[str, list[TerminalResult]]:
    """Submit a task to the mesh under ``settings``; its id and every result it got."""
    async with Client(bootstrap, settings=settings) as client:
        trace_id = await client.submit("Write about logs.")
        await _first(client.wait(trace_id, WAIT_S), running)
        return trace_id, await client.read(client.topics.results, trace_id, TerminalResult)


def test_two_meshes_in_one_event_loop_each_complete_their_own_task_once(
    broker: BrokerHandle,
) -> None:
    first, second = _settings(), _settings()  # two topic prefixes: two meshes on one broker

    async def scenario() -> tuple[tuple[str, list[TerminalResult]], ...]:
        async with ScriptedModel(WRITER_EDITOR / "model.yaml") as model:
            spec = _served_by(load_mesh(WRITER_EDITOR / "mesh.yaml"), model.url)
            for settings in (first, second):
                await ensure_topics(broker.bootstrap, Topics(settings.topic_prefix), spec)
            stop = asyncio.Event()
            async with (
                _running(spec, broker.bootstrap, first, stop) as one,
                _running(spec, broker.bootstrap, second, stop) as other,
            ):
                done = await asyncio.gather(  # both meshes at once
                    _one_task(broker.bootstrap, first, one),
                    _one_task(broker.bootstrap, second, other),
                )
            async with Client(broker.bootstrap, settings=second) as client:
                strays = await client.read(client.topics.results, done[0][0], TerminalResult)
            assert strays == []  # the first mesh's trace never reached the second's topics
            return done

    for _trace_id, results in asyncio.run(scenario()):
        [result] = results
        assert result.status == "completed"
        assert "[draft 3]" in result.output  # the editor asked for two revisions, then approved


async def _verdicts(
    bootstrap: str, settings: Settings, topics: Topics, trace_id: str
) -> list[ControlVerdict]:
    """The verdicts on ``trace_id``, once there is one (none after ``WAIT_S``)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        records = await read_topic(bootstrap, settings, topics.control)
        found = [decode(r.value or b"", ControlVerdict) for r in records if r.key]
        if mine := [v for v in found if v.trace_id == trace_id]:
            return mine
        if time.monotonic() > deadline:
            return []
        await asyncio.sleep(0.5)  # between reads of the topic, not as synchronisation


def test_the_watchdog_in_one_event_loop_answers_a_loop_with_a_persona_shift(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(MESH)
    spec, settings = load_mesh(path), _settings()
    topics = Topics(settings.topic_prefix)

    async def scenario() -> list[ControlVerdict]:
        stop = asyncio.Event()
        async with WatchdogService(spec, broker.bootstrap, settings) as watchdog:
            serving = asyncio.create_task(watchdog.run(stop))
            try:
                async with make_producer(broker.bootstrap, "loop-test") as producer:
                    for record in looping("loop"):
                        await producer.send_and_wait(topics.hops, encode(record), key=b"loop")
                return await _first(
                    _verdicts(broker.bootstrap, settings, topics, "loop"), [serving]
                )
            finally:
                stop.set()
                await serving

    verdicts = asyncio.run(scenario())
    assert {(v.action, v.reason) for v in verdicts} == {("persona_shift", "loop.cycle")}


def _broken_handler_mesh(folder: Path) -> MeshSpec:
    """A python agent whose handler cannot be imported: it fails at start, not at load."""
    return parse_mesh(
        {
            "name": "broken-handler",
            "entry": ["job.requested"],
            "models": {"t": {"model": "x", "base_url": "http://127.0.0.1:9"}},
            "agents": [
                {
                    "name": "worker",
                    "kind": "python",
                    "handler": "no_such_module_here:step",
                    "subscribe": ["job.requested"],
                    "emit": ["job.done"],
                }
            ],
        },
        base_dir=folder,
    )


def test_an_agent_whose_start_fails_stops_the_producer_it_had_started(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    spec = _broken_handler_mesh(tmp_path)
    unclosed: list[str] = []

    async def start() -> type[BaseException] | None:
        try:
            async with AgentService(spec, "worker", broker.bootstrap, _settings()):
                return None
        except ImportPathError as exc:  # the handler is imported at start, after the producer
            return type(exc)  # not the exception: its traceback would keep the service alive

    async def scenario() -> type[BaseException] | None:
        # aiokafka reports a client never stopped through the loop, once it is collected
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: unclosed.append(str(context.get("message")))
        )
        failed = await start()
        gc.collect()
        return failed

    assert asyncio.run(scenario()) is ImportPathError
    assert [m for m in unclosed if "Unclosed" in m] == []
