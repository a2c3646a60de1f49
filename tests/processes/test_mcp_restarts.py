"""MCP servers that go away while the mesh runs, as real processes: the call in flight is a
tool error for the model, the next step reconnects (a stdio server is started again, an HTTP
server is reached again once it is back), and the agent never exits."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from choreo.schemas import ToolCallRecord
from tests.conftest import ProcessMesh, wait_until
from tests.platform.conftest import HERE, free_port, serve_mcp_over_http

pytestmark = pytest.mark.integration

TESTER = "flaky tester"
SERVER = HERE / "flaky_mcp.py"
GONE = "ERROR: mcp:flaky: the server went away during the call"


@dataclass
class HttpServer:
    """The flaky server over HTTP, on a port that outlives its process."""

    port: int
    marker: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = serve_mcp_over_http(
            SERVER, self.port, self.log, env={**os.environ, "FLAKY_MARKER": str(self.marker)}
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    folder = tmp_path_factory.mktemp("flaky-http")
    server = HttpServer(free_port(), folder / "call-arrived", folder / "server.log")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.terminate()
        server.process.wait(timeout=30)


def flaky_mesh(script: Path, url: str) -> dict[str, Any]:
    tester = {
        "model": "scripted",
        "persona": f"You are the {TESTER}.",
        "reads": ["input"],
        "writes": {"answer": "{output}"},
        "routes": [{"finish": True, "output": "answer"}],
    }
    return {
        "name": "mcp-restarts",
        "entry": ["job"],
        "python_path": [str(HERE)],
        "state": {"answer": {"reducer": "replace"}},
        "models": {"scripted": {"model": "flaky", "script": str(script)}},
        "agents": [
            {
                "name": "forward",
                "kind": "python",
                "handler": "handlers:forward",
                "subscribe": ["job"],
                "emit": ["local.asked", "remote.asked"],
            },
            {
                "name": "local",
                "subscribe": ["local.asked"],
                **tester,
                "tools": [{"mcp": "flaky", "command": ["python", str(SERVER)]}],
            },
            # a call the agent did not see fail would end only at this timeout, long after
            # the test has given up waiting for its result
            {
                "name": "remote",
                "subscribe": ["remote.asked"],
                **tester,
                "tools": [{"mcp": "flaky", "url": url, "timeout_s": 600}],
            },
        ],
    }


SCRIPT = {
    "model": "flaky",
    "rules": [
        {"when": {"system": TESTER, "tool": "."}, "reply": "DONE"},
        *(
            {"when": {"system": TESTER, "user": rf"\b{name}\b"}, "tool_calls": [{"name": name}]}
            for name in ("pid", "die", "hang")
        ),
    ],
}


@pytest.fixture(scope="module")
def mesh(
    start_mesh_processes: Callable[..., ProcessMesh],
    http_server: HttpServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProcessMesh]:
    base = tmp_path_factory.mktemp("mcp-restarts")
    script = base / "model.yaml"
    script.write_text(yaml.safe_dump(SCRIPT))
    # the results themselves in the hop records: which process answered
    with start_mesh_processes(
        flaky_mesh(script, http_server.url), base_dir=base, env={"CHOREO_TRACE_CONTENT": "true"}
    ) as running:
        yield running


def call(mesh: ProcessMesh, task: str) -> ToolCallRecord:
    """The one tool call of the task's model step; the trace completed all the same."""
    trace_id = mesh.submit(task)
    result = mesh.result(trace_id)
    assert (result.status, result.output) == ("completed", "DONE"), result.reason
    (only,) = mesh.hops(trace_id)[-1].tool_calls
    assert only.server == "mcp:flaky"
    return only


def agent_log(mesh: ProcessMesh, name: str) -> str:
    return mesh.group.find(f"{name}-1").log_path.read_text()


def test_a_stdio_server_that_dies_is_started_again_for_the_next_step(mesh: ProcessMesh) -> None:
    first = call(mesh, "local pid")
    assert first.status == "ok" and first.result is not None
    died = call(mesh, "local die")  # the server exits while answering
    assert died.status == "error" and (died.result or "").startswith(GONE), died.result
    second = call(mesh, "local pid")
    assert second.status == "ok" and second.result not in (None, first.result)
    # killed between steps: its output ends, so the next call starts a new one first
    os.kill(int(second.result or 0), signal.SIGKILL)
    wait_until(
        lambda: agent_log(mesh, "local").count("mcp server ended the session") >= 2,
        60,
        message="the agent to see the server's output end",
    )
    third = call(mesh, "local pid")
    assert third.status == "ok" and third.result not in (first.result, second.result)
    assert mesh.group.failed() == []


def test_an_http_server_killed_mid_call_or_restarted_is_reached_again(
    mesh: ProcessMesh, http_server: HttpServer
) -> None:
    assert http_server.process is not None
    first = call(mesh, "remote pid")
    assert (first.status, first.result) == ("ok", str(http_server.process.pid))
    trace_id = mesh.submit("remote hang")
    wait_until(http_server.marker.exists, 90, message="the call to reach the server")
    http_server.kill()
    result = mesh.result(trace_id)
    assert (result.status, result.output) == ("completed", "DONE"), result.reason
    (lost,) = mesh.hops(trace_id)[-1].tool_calls
    assert lost.status == "error" and (lost.result or "").startswith(GONE), lost.result
    http_server.start()
    again = call(mesh, "remote pid")
    assert (again.status, again.result) == ("ok", str(http_server.process.pid))
    # restarted between steps: the new process does not know the session, refuses the call
    # unrun, and it is made on a new session
    http_server.kill()
    http_server.start()
    restarted = call(mesh, "remote pid")
    assert (restarted.status, restarted.result) == ("ok", str(http_server.process.pid))
    assert mesh.group.failed() == []
