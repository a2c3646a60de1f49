"""Every trace ends even when nothing more arrives: the keeper's deadline sweep.

An agent is killed (SIGKILL) and not restarted: the trace waiting for it gets no step, ever.
The keeper ends it ``halted`` by ``budget.wall_clock`` when its deadline passes, naming what
it waited for, exactly once and with one escalation, across a keeper restart, and a replay of
the outbox ends it the same way.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest

from choreo.kafka.clients import read_topic
from choreo.keeper.replay import replay
from choreo.schemas import Budget, Escalation
from tests.conftest import ProcessMesh, wait_until
from tests.liveness_keeper.support import WRITER_EDITOR

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def editorless(start_mesh_processes: Callable[..., ProcessMesh]) -> Iterator[ProcessMesh]:
    """writer-editor whose editor was killed after the mesh served one task."""
    with start_mesh_processes(WRITER_EDITOR) as mesh:
        assert mesh.result(mesh.submit("while the editor lives")).status == "completed"
        editor = mesh.group.find("editor-1").process
        assert editor is not None
        editor.send_signal(signal.SIGKILL)
        editor.wait()
        yield mesh


def test_a_trace_whose_agent_died_ends_halted_at_its_deadline(editorless: ProcessMesh) -> None:
    mesh = editorless
    trace_id = mesh.submit("the editor is gone", budget=Budget(max_seconds=8))
    result = mesh.result(trace_id, timeout=120)
    assert result.status == "halted"
    assert result.reason.startswith("budget.wall_clock: deadline")
    assert "draft.ready (read by editor)" in result.reason
    assert len(mesh.results(trace_id)) == 1
    escalations = mesh.client.read(mesh.topics.escalations, trace_id, Escalation)
    assert [e.evidence["rule"] for e in escalations] == ["budget.wall_clock"]
    live = mesh.snapshot(trace_id)
    outbox = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.outbox))
    rebuilt = replay(mesh.spec, mesh.topics, outbox).traces[trace_id]
    assert (rebuilt.status, rebuilt.reason, rebuilt.version, rebuilt.updated_at) == (
        live.status,
        live.reason,
        live.version,
        live.updated_at,
    )


def test_the_sweep_ends_a_trace_once_across_a_keeper_restart(editorless: ProcessMesh) -> None:
    mesh = editorless
    trace_id = mesh.submit("the keeper restarts meanwhile", budget=Budget(max_seconds=20))
    wait_until(
        lambda: [h for h in mesh.hops(trace_id) if h.agent == "writer"],
        60,
        message="the writer's step",
    )
    keeper = mesh.group.find("keeper")
    assert keeper.process is not None
    keeper.process.send_signal(signal.SIGKILL)
    keeper.process.wait()
    mesh.group.restart(keeper)
    result = mesh.result(trace_id, timeout=120)
    assert result.status == "halted" and "deadline" in result.reason
    assert len(mesh.results(trace_id)) == 1
    assert len(mesh.client.read(mesh.topics.escalations, trace_id, Escalation)) == 1
