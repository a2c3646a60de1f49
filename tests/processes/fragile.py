"""User code that ends or pins its process, for tests/processes/test_user_code_processes.py:
a handler that exits or segfaults on one record, tools stuck in ``time.sleep`` and in a
blocking socket read."""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import sys
import time
from pathlib import Path

import choreo


@choreo.agent
async def handle(step: choreo.Step) -> choreo.Result:
    """``exit`` ends the process at once, ``segfault`` crashes it in C; ``interrupt``,
    ``sysexit`` and ``cancel`` raise what is no ``Exception``; ``tools`` hands the task to
    the tool agent; anything else is done."""
    word = step.input.split()[0]
    if word == "exit":
        os._exit(70)
    if word == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if word == "interrupt":
        raise KeyboardInterrupt("pressed")
    if word == "sysexit":
        sys.exit(3)
    if word == "cancel":
        raise asyncio.CancelledError("a library's scope")
    if word == "tools":
        return step.emit("tools.asked")
    return step.finish(output=f"done: {step.input}")


def _started(name: str) -> None:
    """Say the tool runs: a file named after it in the folder ``FRAGILE_STARTED``."""
    (Path(os.environ["FRAGILE_STARTED"]) / name).touch()


@choreo.tool
def sleepy() -> str:
    """Sleeps for an hour."""
    _started("sleepy")
    time.sleep(3600)
    return "late"


@choreo.tool
def reader() -> str:
    """Reads from a socket nobody writes to: blocks in C, with no timeout."""
    _started("reader")
    left, right = socket.socketpair()
    with left, right:
        return left.recv(1).decode()
