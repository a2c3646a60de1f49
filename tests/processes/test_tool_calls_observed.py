"""Every kind of tool call of a Python agent and a tool-calling model agent, run as processes:
the hop records, each process's metrics endpoint, the spans it exports and ``choreo trace``
tell the same story. (The same mesh's behaviour in one process: tests/platform/
test_mesh_faults.py.)"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.commands import CHOREO
from tests.conftest import ProcessMesh, wait_until
from tests.platform.test_mesh_faults import faults_mesh, kb_over_http
from tests.processes.conftest import observed_env, scrape
from tests.telemetry.otlp import OtlpReceiver

pytestmark = pytest.mark.integration

__all__ = ["kb_over_http"]  # the fixture, shared with the in-process tests of the mesh


@pytest.fixture(scope="module")
def mesh(
    start_mesh_processes: Callable[..., ProcessMesh],
    kb_over_http: str,
    receiver: OtlpReceiver,
    metrics_targets: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProcessMesh]:
    with start_mesh_processes(
        faults_mesh(kb_over_http),
        base_dir=tmp_path_factory.mktemp("faults"),
        env=observed_env(receiver, metrics_targets),
    ) as running:
        yield running


def test_python_agent_state_and_every_kind_of_tool_call(
    mesh: ProcessMesh, receiver: OtlpReceiver, metrics_targets: Path
) -> None:
    trace_id = mesh.submit("go")
    result = mesh.result(trace_id)
    assert result.status == "completed", result.reason
    assert result.output == "DONE: every tool answered"
    seen = mesh.snapshot(trace_id).fields["seen"]
    assert seen == {
        "version": 1,
        "hop": 1,
        "hops_left": 5,
        "trace": trace_id,
        "read_only": True,
        "event": "job",
    }
    dispatch, toolbot = mesh.hops(trace_id)
    assert dispatch.agent == "dispatch" and dispatch.status == "ok"
    statuses = [(c.name, c.status, c.server) for c in toolbot.tool_calls]
    assert statuses == [
        ("add", "ok", None),
        ("boom", "error", None),
        ("slow", "timeout", None),
        ("multiply", "ok", "mcp:calc"),
        ("kb_search", "ok", "mcp:kb"),
        ("add", "invalid", None),
    ]
    assert len({(c.name, c.args_sha256) for c in toolbot.tool_calls}) == 6
    assert len(mesh.results(trace_id)) == 1
    text = scrape(metrics_targets, "agent:toolbot")
    for tool, status in (
        ("multiply", "ok"),
        ("kb_search", "ok"),
        ("boom", "error"),
        ("slow", "timeout"),
        ("add", "invalid"),
    ):
        assert f'choreo_tool_calls_total{{status="{status}",tool="{tool}"}} 1.0' in text
    spans = wait_until(
        lambda: (
            {
                s.attributes.get("choreo.tool.server")
                for s in receiver.spans()
                if s.name in ("execute_tool multiply", "execute_tool kb_search")
            }
            >= {"mcp:calc", "mcp:kb"}
        ),
        30,
        message="MCP tool spans",
    )
    assert spans
    shown = subprocess.run(
        [*CHOREO, "trace", trace_id], env=mesh.env(), capture_output=True, text=True, timeout=120
    )
    assert "tool multiply @mcp:calc" in shown.stdout
    assert "tool kb_search @mcp:kb" in shown.stdout
    assert "timeout" in shown.stdout
