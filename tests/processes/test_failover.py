"""Processes die mid-task: SIGKILL an agent replica, SIGKILL the keeper. Nothing is lost,
nothing is applied twice, and every trace still ends with exactly one terminal record."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from choreo.kafka.clients import read_topic
from choreo.keeper.replay import replay
from choreo.schemas import Snapshot
from choreo.schemas.deltas import StateLog
from tests.conftest import EXAMPLES, ProcessMesh, wait_until

pytestmark = pytest.mark.integration


def slow_writer_editor(tmp_path: Path, latency_ms: int, writer_replicas: int) -> dict[str, Any]:
    """The writer-editor mesh with a slower scripted model, so kills land mid-step."""
    source = EXAMPLES / "writer-editor"
    script = yaml.safe_load((source / "model.yaml").read_text())
    script["latency_ms"] = latency_ms
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(script))
    mesh = yaml.safe_load((source / "mesh.yaml").read_text())
    mesh["models"]["scripted"]["script"] = "model.yaml"
    for agent in mesh["agents"]:
        if agent["name"] == "writer":
            agent["replicas"] = writer_replicas
    return mesh


def hop_count(mesh: ProcessMesh, trace_ids: list[str]) -> int:
    return sum(len(mesh.hops(t)) for t in trace_ids)


def assert_each_delta_applied_once(mesh: ProcessMesh, trace_id: str) -> None:
    result = mesh.result(trace_id, timeout=180)
    assert result.status == "completed", result.reason
    assert len(mesh.results(trace_id)) == 1
    snapshot = mesh.snapshot(trace_id)
    assert snapshot.version == 7
    assert snapshot.fields["revisions"] == 2
    authors = Counter(entry.split(":")[0] for entry in snapshot.fields["history"])
    assert authors == {"writer": 3, "editor": 3}
    assert len(snapshot.applied) == len(set(snapshot.applied)) == 7
    assert snapshot.totals.hops == 6


def kill(mesh: ProcessMesh, name: str) -> None:
    child = mesh.group.find(name)
    assert child.process is not None
    os.kill(child.process.pid, signal.SIGKILL)
    child.process.wait()


def test_sigkill_of_an_agent_replica_mid_task_loses_and_repeats_nothing(
    start_test_mesh_processes: Callable[..., ProcessMesh], tmp_path: Path
) -> None:
    mesh = start_test_mesh_processes(
        slow_writer_editor(tmp_path, 400, writer_replicas=2), base_dir=tmp_path
    )
    traces = [mesh.submit(f"failover task {i}", trace_id=f"agent-kill-{i}") for i in range(6)]
    wait_until(lambda: hop_count(mesh, traces) >= 4, 90, message="the first steps")
    kill(mesh, "writer-1")
    for trace_id in traces:
        assert_each_delta_applied_once(mesh, trace_id)


def test_sigkill_of_the_keeper_mid_stream_then_restart_rebuilds_exact_state(
    start_test_mesh_processes: Callable[..., ProcessMesh], tmp_path: Path
) -> None:
    mesh = start_test_mesh_processes(
        slow_writer_editor(tmp_path, 150, writer_replicas=1), base_dir=tmp_path
    )
    traces = [mesh.submit(f"keeper kill {i}", trace_id=f"keeper-kill-{i}") for i in range(6)]
    wait_until(lambda: hop_count(mesh, traces) >= 6, 90, message="the first steps")
    kill(mesh, "keeper")
    mesh.group.start_choreo("keeper-restarted", ["run", "keeper", "--mesh", str(mesh.path)])
    for trace_id in traces:
        assert_each_delta_applied_once(mesh, trace_id)

    outbox = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.outbox))
    rebuilt = replay(mesh.spec, mesh.topics, outbox)
    states = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.state))
    live = StateLog.read(states).latest()
    for trace_id in traces:
        assert msgspec.to_builtins(rebuilt.traces[trace_id]) == msgspec.to_builtins(live[trace_id])

    # the same task once more, with no kill: every killed-run trace ends in the same state
    reference = mesh.submit("keeper kill 0", trace_id="keeper-kill-reference")
    assert mesh.result(reference, timeout=180).status == "completed"
    expected = outcome(mesh.snapshot(reference))
    for trace_id in traces:
        assert outcome(live[trace_id]) == expected, trace_id


def outcome(snapshot: Snapshot) -> dict[str, Any]:
    """What a run decides, without what differs between any two runs (ids, times, input)."""
    return {
        "status": snapshot.status,
        "version": snapshot.version,
        "fields": {k: v for k, v in snapshot.fields.items() if k != "input"},
        "writes": msgspec.to_builtins(snapshot.writes),
        "totals": msgspec.to_builtins(snapshot.totals),
    }


def test_sigterm_drains_the_in_flight_step_and_exits_cleanly(
    start_test_mesh_processes: Callable[..., ProcessMesh], tmp_path: Path
) -> None:
    # each step's start is a debug line: the test waits for it
    mesh = start_test_mesh_processes(
        slow_writer_editor(tmp_path, 1500, writer_replicas=1),
        base_dir=tmp_path,
        env={"CHOREO_LOG_LEVEL": "DEBUG"},
    )
    trace_id = mesh.submit("drain me", trace_id="drain-1")
    writer = mesh.group.find("writer-1")
    assert writer.process is not None

    def writer_busy() -> bool:  # the writer has the task and is waiting on its model
        return '"msg": "step started"' in writer.log_path.read_text()

    wait_until(writer_busy, 60, message="the writer's model call")
    writer.process.send_signal(signal.SIGTERM)
    assert writer.process.wait(timeout=30) == 0
    steps = mesh.client.steps(trace_id)
    assert [s.source for s in steps].count("writer") == 1  # the drained step: done, not lost
    mesh.group.start_choreo(
        "writer-2", ["run", "agent", "--mesh", str(mesh.path), "--agent", "writer"]
    )
    assert_each_delta_applied_once(mesh, trace_id)
