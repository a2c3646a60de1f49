"""choreo.testing runs a mesh spec's services in one event loop on the session's broker: ready
when entered, each mesh with its own model servers and topics, and a service that dies fails
what the test was waiting on with that service's error instead of letting it time out."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

import pytest
from aiokafka import TopicPartition

from choreo.kafka.broker import BrokerHandle
from choreo.kafka.service import ConsumerService
from choreo.models.client import env_var
from choreo.schemas import TerminalResult
from choreo.spec.errors import SpecError
from choreo.spec.mesh import MeshSpec, load_mesh
from choreo.testing import Mesh, ServiceFailed, SyncMesh
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration

WRITER_EDITOR = EXAMPLES / "writer-editor" / "mesh.yaml"
WAIT_S = 60.0


def with_writers(replicas: int) -> MeshSpec:
    """writer-editor with ``replicas`` writers."""
    spec = load_mesh(WRITER_EDITOR)
    agents = [
        a.model_copy(update={"replicas": replicas}) if a.name == "writer" else a
        for a in spec.agents
    ]
    return spec.model_copy(update={"agents": agents})


def test_entered_every_consumer_holds_its_partitions_and_a_task_completes(
    broker: BrokerHandle,
) -> None:
    async def scenario() -> tuple[dict[str, set[TopicPartition]], TerminalResult]:
        async with Mesh(with_writers(2), broker.bootstrap) as mesh:
            held = {
                name: service.consumer.assignment()
                for name, service in mesh.services.items()
                if isinstance(service, ConsumerService)
            }
            trace_id = await mesh.client.submit("Write about partitions.")
            return held, await mesh.client.wait(trace_id, timeout_s=WAIT_S)

    held, result = asyncio.run(scenario())
    assert sorted(held) == ["editor-1", "keeper", "writer-1", "writer-2"]
    assert all(held.values())  # the two writers share the work from the start
    assert not held["writer-1"] & held["writer-2"]
    assert result.status == "completed" and "[draft 3]" in result.output


def test_two_meshes_in_one_process_each_serve_their_own_model_and_topics(
    broker: BrokerHandle,
) -> None:
    async def scenario() -> tuple[list[str], list[str], list[TerminalResult], list[str]]:
        async with (
            Mesh(WRITER_EDITOR, broker.bootstrap) as one,
            Mesh(WRITER_EDITOR, broker.bootstrap) as other,
        ):
            urls = [m.model_url("scripted") for m in (one, other)]
            pointed = [m.spec.models["scripted"].base_url or "" for m in (one, other)]
            traces = [await m.client.submit("Write about isolation.") for m in (one, other)]
            done = [
                await m.client.wait(t, timeout_s=WAIT_S)
                for m, t in zip((one, other), traces, strict=True)
            ]
            strays = await other.client.read(other.topics.results, traces[0], TerminalResult)
            return urls, pointed, done, [s.trace_id for s in strays]

    urls, pointed, done, strays = asyncio.run(scenario())
    assert urls == pointed and urls[0] != urls[1]  # each mesh's copy of the spec, its server
    assert env_var("scripted", "BASE_URL") not in os.environ  # no process-wide setting
    assert [r.status for r in done] == ["completed", "completed"]
    assert strays == []  # the first mesh's trace never reached the second's topics


def test_a_service_that_dies_fails_the_wait_with_its_error(broker: BrokerHandle) -> None:
    async def scenario() -> None:
        async with Mesh(WRITER_EDITOR, broker.bootstrap) as mesh:
            trace_id = await mesh.client.submit("Write about failure.")
            editor = mesh.services["editor-1"]
            assert isinstance(editor, ConsumerService)
            # the editor's consumer closed under it, from outside the test's own task
            closing = asyncio.create_task(editor.consumer.stop())
            await mesh.client.wait(trace_id, timeout_s=600)  # a result that cannot come
            await closing

    with pytest.raises(ServiceFailed) as failed:
        asyncio.run(scenario())
    assert failed.value.service == "editor-1"
    assert failed.value.__cause__ is failed.value.error is not None


#: Work started and not waited for (kept, so that it is not collected while it runs).
_started: set[asyncio.Task[None]] = set()


async def soon(work: Coroutine[Any, Any, None]) -> None:
    """Start ``work`` on the running loop without waiting for it."""
    _started.add(asyncio.ensure_future(work))


def test_a_sync_mesh_raises_a_dead_services_error_from_every_call(broker: BrokerHandle) -> None:
    mesh = SyncMesh(WRITER_EDITOR, broker.bootstrap)
    trace_id = mesh.client.submit("Write about blocking.")
    keeper = mesh.mesh.services["keeper"]
    assert isinstance(keeper, ConsumerService)
    mesh.run(soon(keeper.consumer.stop()))  # the keeper's consumer closed under it
    with pytest.raises(ServiceFailed) as failed:
        mesh.client.wait(trace_id, timeout_s=600)  # a result that cannot come
    assert failed.value.service == "keeper" and mesh.failure is failed.value
    with pytest.raises(ServiceFailed):
        mesh.client.result(trace_id)  # every later call too
    with pytest.raises(ServiceFailed):
        mesh.close()  # and closing, which stops the rest of the mesh
    mesh.close()  # closed once


def test_an_agent_the_spec_lacks_is_refused_before_anything_starts() -> None:
    with pytest.raises(SpecError, match="has no agent 'critic'"):
        Mesh(WRITER_EDITOR, "127.0.0.1:9", agents=["writer", "critic"])
