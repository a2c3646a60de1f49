"""A sandbox service killed with SIGKILL leaves no process of a run behind, whatever the run
was doing: a run's processes end with the service that started them (docs/SANDBOX.md)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from choreo.sandbox.reaper import children
from tests.conftest import wait_until
from tests.sandbox.sandbox_support import (
    Service,
    process_state,
    requires_bwrap,
    sandbox_processes,
    start_service,
)

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


def test_a_run_dies_with_its_service_killed_before_bubblewrap_set_its_own_signal(
    tmp_path: Path, sandbox_limits: dict[str, str]
) -> None:
    """The window made certain: bubblewrap is started through a script that stops itself
    first, the service is killed while it is stopped, and then it goes on to start the run,
    with no parent left for its ``--die-with-parent`` to follow."""
    folder = Path(tempfile.mkdtemp(prefix="choreo-bwrap-"))  # the sandbox's host user reads it
    try:
        folder.chmod(0o755)
        hold, script = folder / "hold", folder / "bwrap"
        bwrap = shutil.which("bwrap")
        script.write_text(f'#!/bin/sh\n[ -e {hold} ] && kill -STOP $$\nexec {bwrap} "$@"\n')
        script.chmod(0o755)
        env = {**sandbox_limits, "CHOREO_SANDBOX_BWRAP": str(script)}
        service = start_service(socket=tmp_path / "api.sock", env=env)
        hold.touch()  # from now on (the service's start-up probe ran unheld)
        start_run(service)
        try:
            stopped = wait_until(_stopped, 30, interval=0.05, message="bubblewrap, held")
        finally:
            kill(service)
        _signal_all(signal.SIGCONT, stopped)
        wait_until(lambda: not sandbox_processes(), 10, interval=0.1, message="the run to end")
    finally:
        shutil.rmtree(folder)


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


def test_a_run_whose_reaper_is_killed_ends_and_leaves_nothing_behind(sandbox: Service) -> None:
    """A reaper killed from outside (the OOM killer, an operator) ends its run as killed, and
    the service reaps what it leaves: no zombie counts against the sandbox uid's limit."""
    results: list[object] = []
    caller = threading.Thread(target=lambda: results.append(sandbox.run(SLEEPS, timeout_s=25)))
    caller.start()
    wait_until(lambda: b"main.py" in _commands(), 30, interval=0.1, message="the code")
    (reaper,) = set(children(sandbox.process.pid)) & set(sandbox_processes())
    os.kill(reaper, signal.SIGKILL)
    caller.join(timeout=30)
    assert [getattr(result, "status", result) for result in results] == ["killed"]
    wait_until(lambda: not sandbox_processes(), 10, interval=0.1, message="the run to end")


def _stopped() -> list[int]:
    """The run's processes that are stopped (state T)."""
    return [pid for pid in sandbox_processes() if process_state(pid) == "T"]


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
