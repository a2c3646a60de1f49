"""A test run killed with SIGTERM mid-suite leaves none of its processes behind: not its
broker, not its meshes' services, not a process it started in a session of its own
(tests/conftest.py ends them all; choreo.kafka.children makes the rest die with it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, processes_marked, wait_until

pytestmark = pytest.mark.integration

PROBE = "CHOREO_TEST_HELD_PROBE"


def test_pytest_killed_with_sigterm_leaves_none_of_its_processes(tmp_path: Path) -> None:
    probe = uuid.uuid4().hex
    ready = tmp_path / "ready"
    env = {
        **{k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"},
        PROBE: probe,
        "HELD_RUN_READY": str(ready),
    }
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/processes/held_run.py",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(ready.exists, 180, message="the held run's mesh")
        started = processes_marked(PROBE, probe)
        # its own broker, the model server, the keeper, two agents and the sleeper at least
        assert len(started) >= 6, started
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
        wait_until(
            lambda: not processes_marked(PROBE, probe), 10, message="the run's processes to end"
        )
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in processes_marked(PROBE, probe):
            os.kill(pid, signal.SIGKILL)
