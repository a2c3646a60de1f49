"""A sandbox service killed with SIGKILL mid-run leaves no process of the run behind: bubblewrap's
``--die-with-parent`` is the parent-death signal the rest of the mesh's children have
(choreo.kafka.children), so a run never outlives the service that started it."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.sandbox.sandbox_support import requires_bwrap, sandbox_processes, start_service

pytestmark = [requires_bwrap, pytest.mark.integration]


def test_a_run_dies_with_its_sandbox_service_killed_by_sigkill(
    tmp_path: Path, sandbox_limits: dict[str, str]
) -> None:
    assert sandbox_processes() == []
    service = start_service(socket=tmp_path / "api.sock", env=sandbox_limits)
    answers: list[object] = []

    def run_long() -> None:  # its connection breaks when the service dies
        try:
            answers.append(service.run("import time\ntime.sleep(25)\n", timeout_s=25))
        except Exception as exc:
            answers.append(exc)

    caller = threading.Thread(target=run_long)
    caller.start()
    try:
        wait_until(sandbox_processes, 30, interval=0.1, message="the run's processes")
    finally:
        service.process.send_signal(signal.SIGKILL)
        service.process.wait()
    wait_until(lambda: not sandbox_processes(), 10, interval=0.1, message="the run to end")
    caller.join(timeout=30)
    assert answers and not caller.is_alive()
