"""``choreo up`` owns its processes: one mesh per folder, every process dies with it (SIGKILL
included), an MCP server dies with its agent, and each service serves its own metrics on a
port of its own.

One ``choreo up`` of the support desk (embedded broker started by the up itself, model server,
keeper, four agents, one with a stdio MCP server, watchdog) serves the whole module; the last
test kills it with SIGKILL. Every process it starts carries a variable of this module in its
environment, which is how the test finds them all, whatever their session or parent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.commands import CHOREO
from tests.conftest import EXAMPLES, processes_marked, wait_until

pytestmark = pytest.mark.integration

PROBE = "CHOREO_TEST_UP_PROBE"
#: The support desk's agents whose metrics port is free (triage's is taken by the test).
AGENTS = ("lookup", "desk", "reviewer")


def _steps_of(agent: str) -> str:
    return f'choreo_steps_total{{agent="{agent}"'


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    folder: Path
    output: Path
    probe: str
    env: dict[str, str]
    metrics_base: int
    taken_port: int

    def text(self) -> str:
        return self.output.read_text()

    def rows(self) -> dict[str, list[str]]:
        """The status sheet's rows (name, pid, status, log), as printed to a pipe."""
        return {
            cells[0]: cells
            for cells in (line.split("\t") for line in self.text().splitlines())
            if len(cells) == 4 and cells[0] != "service"
        }

    def processes(self) -> list[int]:
        return processes_marked(PROBE, self.probe)


def _dead_pid() -> int:
    """A pid that ran and is gone: the pid of a stale announcement."""
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def _free_run(length: int) -> int:
    """The first of ``length`` consecutive ports that are free now."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + length > 65535:
            continue
        try:
            for port in range(base, base + length):
                with socket.socket() as sock:
                    sock.bind(("0.0.0.0", port))
        except OSError:
            continue
        return base


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    folder = tmp_path_factory.mktemp("up-owns")
    shutil.copytree(EXAMPLES / "support-desk", folder / "desk")
    (folder / ".choreo").mkdir()
    stale = {"pid": _dead_pid(), "bootstrap": "127.0.0.1:1", "mesh": "gone", "topic_prefix": "x"}
    (folder / ".choreo" / "up.json").write_text(json.dumps(stale))
    base = _free_run(12)
    taken = socket.socket()  # a port another program holds: one service must do without it
    taken.bind(("0.0.0.0", base + 2))
    taken.listen()
    probe = uuid.uuid4().hex
    env = {
        **{k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"},
        PROBE: probe,
        "CHOREO_METRICS_PORT": str(base),
        "COLUMNS": "200",
    }
    env.pop("CHOREO_METRICS_TARGETS_DIR", None)
    output = folder / "up.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [*CHOREO, "up", "desk/mesh.yaml", "--log-dir", "logs"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Up(process, folder, output, probe, env, base, base + 2)
    try:
        wait_until(lambda: "mesh up" in running.text(), 180, message="the mesh to start")
        yield running
    finally:
        taken.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def test_up_removes_the_announcement_of_an_up_that_is_gone(up: Up) -> None:
    assert "removed .choreo/up.json of a `choreo up` that is gone" in up.text()
    announced = json.loads((up.folder / ".choreo" / "up.json").read_text())
    assert announced["pid"] == up.process.pid


def test_a_second_up_in_the_same_folder_is_refused_and_names_the_first(up: Up) -> None:
    second = subprocess.run(
        [*CHOREO, "up", "desk/mesh.yaml", "--log-dir", "logs"],
        cwd=up.folder,
        env=up.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"already runs from this folder (pid {up.process.pid}" in second.stderr
    assert f"kill {up.process.pid}" in second.stderr
    announced = json.loads((up.folder / ".choreo" / "up.json").read_text())
    assert announced["pid"] == up.process.pid  # the first mesh's announcement is untouched


def test_each_service_serves_only_its_own_metrics_on_a_port_of_its_own(up: Up) -> None:
    rows = up.rows()
    ports = [p for p in range(up.metrics_base, up.metrics_base + len(rows)) if p != up.taken_port]

    def pages() -> dict[int, str] | None:
        try:
            return {p: httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=5).text for p in ports}
        except httpx.TransportError:
            return None

    def primed() -> dict[int, str] | None:  # each agent's series exist once it has started
        found = pages()
        return (
            found
            if found and all(_steps_of(a) in "".join(found.values()) for a in AGENTS)
            else None
        )

    served = wait_until(primed, 90, message="every service's metrics")
    keepers = [p for p, text in served.items() if "choreo_traces_admitted_total" in text]
    assert keepers == [up.metrics_base + 1]  # the keeper starts second, after the model server
    for agent in AGENTS:
        assert len([p for p, text in served.items() if _steps_of(agent) in text]) == 1, agent
    # the third service (triage) found its port taken: it serves elsewhere, never exited
    assert "metrics port taken" in (up.folder / "logs" / "triage-1.log").read_text()
    assert " exited " not in up.text()


def test_an_mcp_server_dies_with_its_agent_killed_by_sigkill(up: Up) -> None:
    agent = int(up.rows()["desk-1"][1])

    def kb_servers() -> list[int]:
        return [
            pid
            for pid in up.processes()
            if b"kb_server.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]

    server = wait_until(kb_servers, 60, message="the desk's MCP server")[0]
    os.kill(agent, signal.SIGKILL)
    wait_until(lambda: server not in up.processes(), 10, message="the MCP server to end")


def test_up_killed_with_sigkill_leaves_no_process_alive_10s_later(up: Up) -> None:
    """Runs last in this module: it ends the module's mesh."""
    started = up.processes()
    assert len(started) >= 8  # broker, model server, keeper, 4 agents, MCP server, watchdog
    up.process.kill()
    up.process.wait(timeout=10)
    wait_until(lambda: not up.processes(), 10, message="every process of the mesh to end")


def test_a_closed_terminal_stops_up_and_every_service_cleanly(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "writer-editor", tmp_path / "writer-editor")
    probe = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    output = tmp_path / "up.out"
    with output.open("wb") as out:
        up = subprocess.Popen(
            [*CHOREO, "up", "writer-editor/mesh.yaml", "--no-watchdog", "--log-dir", "logs"],
            cwd=tmp_path,
            env={**env, PROBE: probe},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "mesh up" in output.read_text(), 120, message="the mesh to start")
        assert len(processes_marked(PROBE, probe)) >= 5  # up, broker, model, keeper, 2 agents
        up.send_signal(signal.SIGHUP)
        up.wait(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    assert up.returncode == 0, output.read_text()
    assert "all services stopped" in output.read_text()
    assert processes_marked(PROBE, probe) == []  # stopped, not orphaned
    assert not (tmp_path / ".choreo" / "up.json").exists()
