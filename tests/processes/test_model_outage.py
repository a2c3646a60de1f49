"""Back-pressure on a model outage: while the tier is down the agent takes no work, commits
nothing past it and says so on its metrics endpoint (``choreo_agent_paused``); when the model
answers again every task ends as if nothing happened."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition

from tests.conftest import ProcessMesh, wait_until
from tests.liveness.support import committed, model_url, one_agent_mesh
from tests.tiers.support import scrape, server_stats

pytestmark = pytest.mark.integration


def set_down(url: str, down: bool) -> None:
    httpx.put(f"{url}/faults", json={"down": down}, timeout=10).raise_for_status()


def test_a_model_outage_pauses_the_agent_and_every_task_completes_once_it_ends(
    start_test_mesh_processes: Callable[..., ProcessMesh], tmp_path: Path
) -> None:
    targets = tmp_path / "targets"
    spec = one_agent_mesh(
        tmp_path,
        script={"faults": {"down": True}},
        tier={"max_retries": 1, "circuit_failures": 2, "circuit_cooldown_s": 1},
    )
    # Two slots for four tasks: the agent is full of held calls and still reports the pause.
    mesh = start_test_mesh_processes(
        spec,
        base_dir=tmp_path,
        env={
            "CHOREO_METRICS_PORT": "0",
            "CHOREO_METRICS_TARGETS_DIR": str(targets),
            "CHOREO_MAX_IN_FLIGHT": "2",
        },
    )
    url = model_url(mesh)
    tp = TopicPartition(mesh.topics.event("task.received"), 0)
    group = f"{mesh.settings.topic_prefix}.agent.solo"
    traces = [mesh.submit(f"whole task in an outage {i}", trace_id=f"outage-{i}") for i in range(4)]

    def paused() -> float:
        return scrape(targets, "agent:solo", "choreo_agent_paused", agent="solo")

    wait_until(paused, 60, message="the agent to pause")
    wait_until(
        lambda: server_stats(url)["unavailable"] >= 4, 30, message="probes after the first failures"
    )  # the outage was probed, not waited out
    assert all(mesh.results(t) == [] for t in traces)  # no task failed for the outage
    steps = mesh.client.records(mesh.topics.outbox, traces[0])
    assert [r for r in steps if r.value and b'"source":"solo"' in r.value] == []
    assert committed(mesh, group, tp) <= 0  # nothing committed past the held records

    set_down(url, False)
    for trace_id in traces:
        result = mesh.result(trace_id, timeout=120)
        assert result.status == "completed", result.reason
        assert len(mesh.results(trace_id)) == 1
    wait_until(lambda: paused() == 0, 30, message="the agent to resume")
    assert server_stats(url)["completions"] == 4
    for trace_id in traces:
        outbox = mesh.client.steps(trace_id)
        assert [r.type for r in outbox if r.source == "solo"] == ["trace.finish"]
