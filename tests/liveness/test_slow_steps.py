"""A step longer than the consumer's poll interval runs once: the agent keeps polling (its
partitions paused while every slot is busy), so it never leaves its group mid-step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import RunningMesh
from tests.liveness.support import model_url, one_agent_mesh
from tests.tiers.support import server_stats

pytestmark = pytest.mark.integration


def test_a_step_longer_than_the_poll_interval_runs_once(
    start_test_mesh: Callable[..., RunningMesh], tmp_path: Path
) -> None:
    # Each model call takes 4 s; a member that does not poll for 1.5 s leaves its group. One
    # step at a time, so the agent is full while each call runs.
    spec = one_agent_mesh(tmp_path, script={"latency_ms": 4000}, tier={"timeout_s": 30})
    mesh = start_test_mesh(
        spec,
        base_dir=tmp_path,
        settings={"max_poll_interval_ms": 1500, "max_in_flight": 1},
    )
    traces = [mesh.submit(f"whole slow task {i}", trace_id=f"slow-{i}") for i in range(3)]
    for trace_id in traces:
        assert mesh.result(trace_id, timeout=120).status == "completed"
    assert server_stats(model_url(mesh))["completions"] == 3  # no call made twice
    for trace_id in traces:
        outbox = mesh.client.steps(trace_id)
        ids = Counter(r.event_id for r in outbox if r.source == "solo")
        assert list(ids.values()) == [1], ids
