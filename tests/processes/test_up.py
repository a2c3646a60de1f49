"""``choreo up`` runs a whole mesh as OS processes and stops every one of them on Ctrl-C."""

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


#: Every example with a task it completes; each must run under ``choreo up`` as shipped.
EXAMPLE_TASKS = {
    "writer-editor": "hello from up",
    "research": "Should we move our batch jobs to event streams?",
    "triage": "The app crashes when I upload a photo.",
    "supervised-writing": "Why do agents need shared, versioned state?",
    "support-desk": "My order 1042 arrived broken, can I get a refund?",
    "code-fix": "Write slugify(title) in solution.py: lowercase words of letters and digits, "
    "joined by single hyphens, punctuation dropped.",
}


@pytest.mark.parametrize("example", sorted(EXAMPLE_TASKS))
def test_up_serves_tasks_and_stopping_it_stops_every_service(
    broker: BrokerHandle, tmp_path: Path, example: str
) -> None:
    if example == "code-fix" and shutil.which("bwrap") is None:
        pytest.skip("code-fix runs its code in the sandbox, which needs bubblewrap (bwrap)")
    mesh_dir = tmp_path / example
    shutil.copytree(EXAMPLES / example, mesh_dir)
    mesh = mesh_dir / "mesh.yaml"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CHOREO_TOPIC_PREFIX": f"up-{example}",
        "COLUMNS": "200",
    }
    choreo = CHOREO
    up = subprocess.Popen(
        [*choreo, "up", str(mesh), "--no-watchdog", "--log-dir", str(tmp_path / "logs")],
        cwd=tmp_path,  # one `choreo up` per folder: the test's own
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # at least the keeper, two agents and the scripted model server
        wait_until(
            lambda: len(processes_mentioning(str(mesh_dir))) >= 4,
            60,
            message="the mesh's processes",
        )
        done = subprocess.run(
            [*choreo, "submit", str(mesh), EXAMPLE_TASKS[example], "--wait", "--timeout", "120"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "completed" in done.stdout
    finally:
        up.send_signal(signal.SIGTERM)  # what a process supervisor sends; Ctrl-C is SIGINT
        output, _ = up.communicate(timeout=60)
    assert up.returncode == 0, output
    assert "all services stopped" in output
    assert processes_mentioning(str(mesh_dir)) == []
