"""The healthy examples, watched: the watchdog reads every one of their hops and says nothing.

Each example runs with its watchdog, in this process, for the whole module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from choreo.bench.watchdog import caught_up
from choreo.kafka.clients import read_topic
from choreo.schemas import ControlVerdict, Escalation
from tests.conftest import EXAMPLES, RunningMesh, wait_until

pytestmark = pytest.mark.integration

TASKS = {
    "writer-editor": "Write about event-driven systems.",
    "research": "Should we move our batch jobs to event streams?",
    "support-desk": "My order 1042 arrived broken, can I get a refund?",
}


@pytest.fixture(scope="module")
def watched(start_mesh: Callable[..., RunningMesh]) -> Iterator[dict[str, RunningMesh]]:
    meshes = {name: start_mesh(EXAMPLES / name / "mesh.yaml", watchdog=True) for name in TASKS}
    yield meshes
    for mesh in meshes.values():
        mesh.stop()


@pytest.mark.parametrize("example", sorted(TASKS))
def test_a_healthy_example_gets_no_verdict_and_no_escalation(
    watched: dict[str, RunningMesh], example: str
) -> None:
    mesh = watched[example]
    trace_id = mesh.submit(TASKS[example])
    assert mesh.result(trace_id, timeout=120.0).status == "completed"
    wait_until(
        lambda: mesh.client.run(caught_up, trace_id),
        180.0,
        interval=1.0,
        message=f"the watchdog of {example} to read every hop",
    )
    for topic, kind in (
        (mesh.topics.control, ControlVerdict),
        (mesh.topics.escalations, Escalation),
    ):
        records = mesh.run(read_topic(mesh.bootstrap, mesh.settings, topic))
        assert records == [], f"{example}: {[r.value for r in records]} ({kind.__name__})"
