"""A test run held open while its mesh runs, for tests/processes/test_pytest_killed.py to
kill: not collected by the suite itself (its name does not start with ``test_``)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from tests.conftest import EXAMPLES, ProcessMesh


def test_hold_a_mesh_of_processes_open(
    start_mesh_processes: Callable[..., ProcessMesh],
) -> None:
    start_mesh_processes(EXAMPLES / "writer-editor" / "mesh.yaml")
    # a process in a session of its own, started without the parent-death signal
    subprocess.Popen(["sleep", "600"], start_new_session=True)
    Path(os.environ["HELD_RUN_READY"]).write_text("ready")
    threading.Event().wait(600)  # held until the outer test kills this run
