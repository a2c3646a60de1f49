"""``choreo up`` twice in one folder: the second run's agents reach the second run's servers.

Before, the launcher found a server's address by searching its log, which every run appends
to, and took the first run's "listening on" line: every task of the second run then failed
to connect to a model server that no longer existed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from choreo.kafka.broker import BrokerHandle
from tests.commands import CHOREO
from tests.conftest import EXAMPLES, processes_mentioning, wait_until

pytestmark = pytest.mark.integration


def up_then_submit(mesh: Path, log_dir: Path, env: dict[str, str], task: str) -> str:
    """Run ``choreo up``, submit one task and wait for it, stop; return submit's output."""
    up = subprocess.Popen(
        [*CHOREO, "up", str(mesh), "--no-watchdog", "--log-dir", str(log_dir)],
        cwd=mesh.parent,  # one `choreo up` per folder: the test's own
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(
            lambda: len(processes_mentioning(str(mesh.parent))) >= 4,
            60,
            message="the mesh's processes",
        )
        done = subprocess.run(
            [*CHOREO, "submit", str(mesh), task, "--wait", "--timeout", "120"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        up.send_signal(signal.SIGTERM)
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    wait_until(
        lambda: processes_mentioning(str(mesh.parent)) == [],
        30,
        message="every service of the run to stop",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_up_twice_in_one_folder_serves_tasks_both_times(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    mesh_dir = tmp_path / "writer-editor"
    shutil.copytree(EXAMPLES / "writer-editor", mesh_dir)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CHOREO_TOPIC_PREFIX": "up-twice",
        "COLUMNS": "200",
    }
    logs = tmp_path / "logs"
    assert "completed" in up_then_submit(mesh_dir / "mesh.yaml", logs, env, "first run")
    assert "completed" in up_then_submit(mesh_dir / "mesh.yaml", logs, env, "second run")
    # both runs' announcements are in the one log; the second run used its own
    assert (logs / "model-scripted.log").read_text().count("listening on") == 2
