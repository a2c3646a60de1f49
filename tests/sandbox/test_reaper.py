"""The run's reaper on its own (no bubblewrap needed): it exits as its command did, and
nothing it started outlives it, whether the command ends or the service lets go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from choreo.sandbox import reaper
from tests.conftest import wait_until
from tests.sandbox.sandbox_support import process_state

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox is Linux only")


@contextmanager
def reaped(script: str) -> Iterator[tuple[subprocess.Popen[str], Callable[[], None]]]:
    """Run ``sh -c script`` under the reaper; yield the reaper and what lets go of its
    lifeline (closes the write end, as the service does; done on exit if not before)."""
    read_end, write_end = os.pipe()
    argv = [sys.executable, "-I", "-S", "-c", Path(reaper.__file__).read_text(), str(read_end)]
    process = subprocess.Popen(
        [*argv, "sh", "-c", script], pass_fds=(read_end,), stdout=subprocess.PIPE, text=True
    )
    os.close(read_end)
    held = [write_end]

    def let_go() -> None:
        while held:
            os.close(held.pop())

    try:
        yield process, let_go
    finally:
        let_go()  # the reaper kills whatever a failed test left running
        process.wait(timeout=30)


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z")


@pytest.mark.parametrize("code", [0, 3, 125])
def test_the_reaper_exits_with_its_command_s_exit_code(code: int) -> None:
    with reaped(f"exit {code}") as (process, _lifeline):
        assert process.wait(timeout=30) == code


@pytest.mark.parametrize("number", [signal.SIGUSR1, signal.SIGKILL])
def test_the_reaper_dies_by_the_signal_its_command_died_by(number: int) -> None:
    with reaped(f"kill -{number} $$") as (process, _lifeline):
        assert process.wait(timeout=30) == -number


def test_a_process_the_command_left_behind_dies_with_the_reaper() -> None:
    with reaped("sleep 300 & echo $!") as (process, _lifeline):
        assert process.stdout is not None
        left = int(process.stdout.readline())
        assert process.wait(timeout=30) == 0
        assert not alive(left)


def test_letting_go_of_the_lifeline_kills_the_command_and_what_it_started() -> None:
    with reaped("sleep 300 & echo $!; sleep 300") as (process, let_go):
        assert process.stdout is not None
        started = int(process.stdout.readline())
        assert alive(started) and process.poll() is None
        let_go()
        assert process.wait(timeout=30) == 128 + signal.SIGKILL
        wait_until(lambda: not alive(started), 10, message="the command's child to end")
