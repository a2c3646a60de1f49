"""``choreo up`` and ``choreo broker`` as an operator runs them: a crashed service comes back
and says so, the status reads as plain lines in a log file, and nothing outlives the CLI."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from choreo.kafka.broker import BrokerHandle
from choreo.local.processes import ProcessGroup
from choreo.local.supervise import Supervisor
from tests.commands import CHOREO
from tests.conftest import EXAMPLES, REPO, processes_mentioning, wait_until
from tests.operator.support import words


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_broker_stopped_with_sigterm_leaves_no_broker_behind() -> None:
    cli = subprocess.Popen(
        [*CHOREO, "broker"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        address = (cli.stderr.readline() if cli.stderr else "").strip()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address), address
        listener = f"tcp://{address}"
        brokers = wait_until(lambda: processes_mentioning(listener), 30, message="the broker")
    finally:
        cli.send_signal(signal.SIGTERM)
        out, _ = cli.communicate(timeout=30)
    assert cli.returncode == 0
    assert "data in memory only" in out
    wait_until(
        lambda: not any(_alive(pid) for pid in brokers), 15, message="the broker child to end"
    )


def test_up_restarts_a_killed_service_and_reports_it(broker: BrokerHandle, tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CHOREO_TOPIC_PREFIX": f"up{os.getpid()}",
        "CHOREO_SESSION_TIMEOUT_MS": "6000",
    }
    mesh = EXAMPLES / "writer-editor" / "mesh.yaml"
    with log.open("w") as out:
        up = subprocess.Popen(
            [*CHOREO, "up", str(mesh), "--no-watchdog", "--log-dir", str(tmp_path / "logs")],
            cwd=tmp_path,  # one `choreo up` per folder: the test's own
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: "mesh up" in log.read_text() or up.poll() is not None,
            90,
            message="the mesh to start",
        )
        text = log.read_text()
        assert "mesh up" in text, text
        assert f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}\n" in text  # unwrapped
        rows = {
            cells[0]: cells
            for cells in (line.split("\t") for line in text.splitlines())
            if len(cells) == 4
        }
        assert rows["writer-1"][2] == "running"
        assert rows["writer-1"][3] == str(tmp_path / "logs" / "writer-1.log")  # uncut
        pids = [int(cells[1]) for name, cells in rows.items() if name != "service"]
        os.kill(int(rows["writer-1"][1]), signal.SIGKILL)

        restarted = wait_until(
            lambda: re.search(r"writer-1 restarted \(pid (\d+), restart 1\)", log.read_text()),
            60,
            message="a restart",
        )
        assert "writer-1 exited (-9)" in log.read_text()
        assert _alive(int(restarted.group(1)))
        done = subprocess.run(
            [*CHOREO, "submit", str(mesh), "after a crash", "--wait", "--timeout", "150"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=200,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
    assert up.returncode == 0
    lines = log.read_text().splitlines()
    stopping = next(i for i, line in enumerate(lines) if "stopping every service" in line)
    assert lines[stopping + 1] == "# " + words(lines[stopping + 1][2:])  # the sheet, apart
    for pid in [*pids, int(restarted.group(1))]:
        assert not _alive(pid), pid


@pytest.mark.parametrize(
    ("program", "shown"),
    [
        (
            "import handlers_with_a_typo",
            "ModuleNotFoundError: No module named 'handlers_with_a_typo'",
        ),
        (
            "import json, sys\n"
            "print(json.dumps({'level': 'error', 'msg': 'fenced', 'reason': 'epoch 3'}))\n"
            "print(json.dumps({'level': 'info', 'msg': 'closing'}))\n"
            "sys.exit(1)",
            "exited (1) after 0s: fenced: epoch 3;",
        ),
    ],
)
def test_a_service_that_exits_shows_its_last_error_line_not_only_its_status(
    tmp_path: Path, program: str, shown: str
) -> None:
    with ProcessGroup(tmp_path) as group:
        child = group.start("writer-1", [sys.executable, "-c", "print('ValueError: old run')"])
        wait_until(lambda: child.status == "stopped", 30, message="the earlier run to end")
        child.argv = [sys.executable, "-c", program]
        group.respawn(child)  # the same log: only this run's lines count
        wait_until(lambda: child.status.startswith("exited"), 30, message="the service to exit")
        events = Supervisor(group).check()
    assert len(events) == 1
    assert shown in events[0], events[0]
    assert "old run" not in events[0]
