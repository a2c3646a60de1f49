"""A sandbox service killed with SIGKILL leaves no process of a run behind, whatever the run
was doing: a run's processes end with the service that started them (docs/SANDBOX.md)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.sandbox.sandbox_support import Service, requires_bwrap, sandbox_processes, start_service

pytestmark = [requires_bwrap, pytest.mark.integration]

SLEEPS = "import time\ntime.sleep(25)\n"


def start_run(service: Service) -> threading.Thread:
    """Ask ``service`` for a 25 s run from a thread; its connection breaks when the service
    dies, which ends the thread."""

    def run() -> None:
        try:
            service.run(SLEEPS, timeout_s=25)
        except Exception:  # the service was killed under it
            return

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    return caller


def kill(service: Service) -> None:
    service.process.send_signal(signal.SIGKILL)
    service.process.wait()


def test_a_run_dies_with_its_sandbox_service_killed_by_sigkill(
    tmp_path: Path, sandbox_limits: dict[str, str]
) -> None:
    assert sandbox_processes() == []
    service = start_service(socket=tmp_path / "api.sock", env=sandbox_limits)
    caller = start_run(service)
    try:  # the user's code is running once a process of the run is in its own pid namespace
        wait_until(sandbox_processes, 30, interval=0.1, message="the run's processes")
        wait_until(lambda: b"main.py" in _commands(), 30, interval=0.1, message="the code")
    finally:
        kill(service)
    wait_until(lambda: not sandbox_processes(), 10, interval=0.1, message="the run to end")
    caller.join(timeout=30)
    assert not caller.is_alive()


@pytest.mark.parametrize("after_ms", [0, 1, 2, 5, 10, 20, 50])
def test_a_run_dies_with_its_service_killed_while_the_run_is_being_set_up(
    tmp_path: Path, sandbox_limits: dict[str, str], after_ms: int
) -> None:
    """bubblewrap's own parent-death signals are set only once each of its processes is set
    up. The run's processes are frozen ``after_ms`` after the first one appears, the service
    is killed, and they are thawed: wherever each was in its setting up, none may live on."""
    assert sandbox_processes() == []
    service = start_service(socket=tmp_path / "api.sock", env=sandbox_limits)
    start_run(service)
    frozen: list[int] = []
    try:
        wait_until(sandbox_processes, 30, interval=0.0005, message="the run's first process")
        time.sleep(after_ms / 1000)  # the moment of the kill, not a wait for anything
        frozen = _signal_all(signal.SIGSTOP)
    finally:
        kill(service)
        _signal_all(signal.SIGCONT, frozen)
    wait_until(lambda: not sandbox_processes(), 10, interval=0.1, message="the run to end")


def _signal_all(number: int, also: tuple[int, ...] | list[int] = ()) -> list[int]:
    """Send ``number`` to every process of the run (and to ``also``); the pids signalled."""
    signalled = []
    for pid in sorted({*sandbox_processes(), *also}):
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            continue
        signalled.append(pid)
    return signalled


def _commands() -> bytes:
    """The command lines of the run's processes, joined."""
    found = b""
    for pid in sandbox_processes():
        try:
            found += Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # exited while we looked
            continue
    return found
