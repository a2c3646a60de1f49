"""``choreo up`` runs a whole mesh as OS processes and stops every one of them on Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.runtime.broker import BrokerHandle
from tests.conftest import EXAMPLES, wait_until

pytestmark = pytest.mark.integration


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def test_up_serves_tasks_and_stopping_it_stops_every_service(broker: BrokerHandle,
                                                        tmp_path: Path) -> None:
    mesh_dir = tmp_path / "writer-editor"
    shutil.copytree(EXAMPLES / "writer-editor", mesh_dir)
    mesh = mesh_dir / "mesh.yaml"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
           "CHOREO_TOPIC_PREFIX": "uptest", "COLUMNS": "200"}
    choreo = [sys.executable, "-m", "services.cli.main"]
    up = subprocess.Popen([*choreo, "up", str(mesh), "--no-watchdog", "--log-dir",
                           str(tmp_path / "logs")], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        # keeper, one writer, one editor and the scripted model server
        wait_until(lambda: len(processes_mentioning(str(mesh_dir))) >= 4, 60,
                   message="the mesh's processes")
        done = subprocess.run([*choreo, "submit", str(mesh), "hello from up", "--wait",
                               "--timeout", "120"], env=env, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "completed" in done.stdout
    finally:
        up.send_signal(signal.SIGTERM)  # what a process supervisor sends; Ctrl-C is SIGINT
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "all services stopped" in output
    assert processes_mentioning(str(mesh_dir)) == []
