"""choreo.client.Client and SyncClient against real meshes on the session's broker: what a
user submits comes back, what they read is what the mesh wrote, and each failure is the
documented error."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from choreo.client import (
    Client,
    EscalationError,
    MeshNotRunning,
    ResultTimeout,
    SyncClient,
    Trace,
    TraceNotFound,
    VersionNotFound,
)
from choreo.kafka.clients import read_topic
from choreo.keeper.replay import history
from choreo.schemas import Budget, TerminalResult
from choreo.schemas.errors import ChoreoError
from tests.conftest import EXAMPLES, REPO, RunningMesh, wait_until
from tests.liveness.support import one_agent_mesh

pytestmark = pytest.mark.integration

MESH = EXAMPLES / "writer-editor" / "mesh.yaml"


def client_of(mesh: RunningMesh) -> SyncClient:
    return SyncClient(mesh.bootstrap, prefix=mesh.settings.topic_prefix)


def test_a_submitted_task_is_waited_for_and_read_back(writer_editor: RunningMesh) -> None:
    async def submit_and_read() -> tuple[str, TerminalResult, TerminalResult | None, Trace]:
        prefix = writer_editor.settings.topic_prefix
        async with Client(writer_editor.bootstrap, prefix=prefix) as client:
            trace_id = await client.submit("Write about event sourcing.", mesh=MESH)
            result = await client.wait(trace_id, timeout_s=90)
            return trace_id, result, await client.result(trace_id), await client.trace(trace_id)

    trace_id, result, again, trace = asyncio.run(submit_and_read())
    assert (result.trace_id, result.status) == (trace_id, "completed")
    assert again == result
    assert [h.agent for h in trace.hops] == ["writer", "editor"] * 3
    assert trace.results == [result] and trace.status == "completed"
    assert trace.snapshot.version == result.state_version


def test_the_result_of_a_trace_nobody_submitted_is_none(writer_editor: RunningMesh) -> None:
    nobody = f"nobody-{uuid.uuid4()}"
    with client_of(writer_editor) as client:
        assert client.result(nobody) is None
        with pytest.raises(TraceNotFound) as missing:
            client.state(nobody)
    assert isinstance(missing.value, LookupError) and isinstance(missing.value, ChoreoError)


def test_a_wait_finds_results_written_before_it_began_and_after(
    writer_editor: RunningMesh,
) -> None:
    with client_of(writer_editor) as first:
        earlier = first.submit("Write about logs.")
        first.wait(earlier, 90)  # the results follower runs from here on
        later = first.submit("Write about offsets.")
        wait_until(lambda: first.result(later), 90, message="the later result")
        assert first.wait(later, 5).trace_id == later  # written before this wait began
    with client_of(writer_editor) as fresh:  # its follower starts after both ended
        assert fresh.wait(earlier, 5).trace_id == earlier


def test_waiting_on_a_trace_that_never_ends_raises_result_timeout(
    start_test_mesh: Callable[..., RunningMesh], tmp_path: Path
) -> None:
    # a model that answers long after the test: the trace runs until its deadline
    spec = one_agent_mesh(tmp_path, script={"latency_ms": 900_000}, tier={"timeout_s": 1800})
    # the step never ends: stop the mesh without waiting for it
    running = start_test_mesh(spec, base_dir=tmp_path, settings={"shutdown_grace_s": 1})
    with client_of(running) as client:
        sent = client.send("whole task that takes forever", mesh=running.path)
        assert client.admission(sent, 60).status == "admitted"
        with pytest.raises(ResultTimeout) as waited:
            client.wait(sent.trace_id, timeout_s=2)
        assert client.state(sent.trace_id).status == "running"
    assert isinstance(waited.value, TimeoutError) and waited.value.trace_id == sent.trace_id
    assert isinstance(waited.value, ChoreoError)


def test_the_state_at_each_version_is_the_one_replayed_from_the_outbox(
    writer_editor: RunningMesh,
) -> None:
    with client_of(writer_editor) as client:
        trace_id = client.submit("Write about versions.")
        client.wait(trace_id, 90)
        outbox = writer_editor.run(
            read_topic(writer_editor.bootstrap, writer_editor.settings, writer_editor.topics.outbox)
        )
        replayed = history(writer_editor.spec, writer_editor.topics, outbox, trace_id)
        versions = [client.state(trace_id, at=v, mesh=MESH) for v in range(1, len(replayed) + 1)]
        assert versions == replayed and len(versions) == 7  # admitted, then one per step
        live = client.state(trace_id)
        assert (live.version, live.status, live.fields) == (
            versions[-1].version,
            versions[-1].status,
            versions[-1].fields,
        )
        with pytest.raises(VersionNotFound, match=re.escape("has versions 1..7, not 8")):
            client.state(trace_id, at=8, mesh=MESH)
        with pytest.raises(ValueError, match="mesh"):
            client.state(trace_id, at=1)


def test_the_sync_client_works_from_plain_code_and_inside_a_running_loop(
    writer_editor: RunningMesh,
) -> None:
    client = client_of(writer_editor)
    try:
        trace_id = client.submit("Write about plain scripts.")
        assert client.wait(trace_id, 90).status == "completed"
        spent = client.budget(trace_id)
        assert (spent.used.hops, spent.left.hops) == (6, 6)  # of the spec's 12

        async def from_a_coroutine() -> TerminalResult | None:
            return client.result(trace_id)  # blocks this loop, runs on the client's own

        assert asyncio.run(from_a_coroutine()) is not None
    finally:
        client.close()
    client.close()  # closing twice is fine; using a closed client is not
    with pytest.raises(RuntimeError, match="closed"):
        client.result(trace_id)


def test_submitting_to_a_mesh_that_does_not_run_here_says_so(writer_editor: RunningMesh) -> None:
    with client_of(writer_editor) as client, pytest.raises(MeshNotRunning) as refused:
        client.submit("hello", mesh=EXAMPLES / "triage" / "mesh.yaml")
    assert "mesh 'triage' is not running under topic prefix" in str(refused.value)
    assert isinstance(refused.value, LookupError)


def test_an_escalation_is_resolved_once(writer_editor: RunningMesh) -> None:
    with client_of(writer_editor) as client:
        trace_id = client.submit("Write about budgets.", budget=Budget(max_hops=1))
        assert client.wait(trace_id, 90).status == "halted"
        (escalation,) = [e for e in client.escalations() if e.trace_id == trace_id]
        closed = client.close_escalation(escalation.escalation_id)
        assert (closed.status, closed.continuation_trace_id) == ("closed", None)
        with pytest.raises(EscalationError, match="already closed"):
            client.resume(escalation.escalation_id, "too late")
        assert [e.status for e in client.escalations() if e.trace_id == trace_id] == ["closed"]


def run_documented(section: str, mesh: RunningMesh, folder: Path) -> list[str]:
    """Run the first Python block under ``section`` of docs/CLIENT.md as a script, against
    ``mesh``; the lines it printed."""
    text = (REPO / "docs" / "CLIENT.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text.split(section, 1)[1], re.DOTALL)[0]
    script = folder / "example.py"
    script.write_text(block)
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env=mesh.env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_documented_example_runs(writer_editor: RunningMesh, tmp_path: Path) -> None:
    lines = run_documented("## A complete example", writer_editor, tmp_path)
    assert lines[0].startswith("completed after 6 steps")
    assert [line.split()[1] for line in lines[1:7]] == ["writer", "editor"] * 3
    assert lines[-2].startswith("halted budget.hops")
    assert lines[-1].startswith("completed continuing ")


def test_the_documented_sync_example_runs(writer_editor: RunningMesh, tmp_path: Path) -> None:
    printed = run_documented("## From plain code", writer_editor, tmp_path)
    assert "[draft 3]" in "\n".join(printed)  # the approved third draft
