"""Python agents and tools that misbehave in every way Python allows, for the tests of the
step boundary (tests/platform/test_user_code.py): the first word of the task picks how."""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import sys
import time
from pathlib import Path

import choreo


class LibraryCancelled(BaseException):
    """A library's own cancellation, as ``trio.Cancelled`` or ``gevent.Timeout`` are."""


async def _cancelled_inner_task() -> None:
    inner = asyncio.create_task(asyncio.sleep(3600))
    await asyncio.sleep(0)
    inner.cancel()
    await inner  # the inner task's CancelledError comes out here


@choreo.agent
async def misbehave(step: choreo.Step) -> choreo.Result:
    """Raises, exits or writes what it must not, as the task's first word says."""
    word = step.input.split()[0]
    if word == "interrupt":
        raise KeyboardInterrupt("pressed in the handler")
    if word == "library":
        raise LibraryCancelled("scope cancelled")
    if word == "cancel":
        raise asyncio.CancelledError("inner scope")
    if word == "inner":
        await _cancelled_inner_task()
    if word == "exit":
        sys.exit(4)
    if word == "generator":
        raise GeneratorExit
    if word == "undeclared":
        return step.finish(output="typo", writes={"sen": "a field the spec does not declare"})
    if word == "surrogate":
        return step.finish("seen", writes={"seen": "report-\udce9.txt"})
    if word in ("code", "unreachable"):
        return step.emit(f"{word}.asked")
    if word.startswith(("fuzz-", "chaos-")):
        return step.emit(word.partition("-")[0])
    return step.emit("tools.asked")


@choreo.tool
def interrupt() -> str:
    """Raises KeyboardInterrupt in its worker thread."""
    raise KeyboardInterrupt("pressed in a tool")


@choreo.tool
async def cancelled() -> str:
    """Raises CancelledError though nothing cancelled the step."""
    raise asyncio.CancelledError("a tool's own scope")


@choreo.tool
def listing() -> str:
    """A file name from os.listdir of bytes that are not UTF-8: a lone surrogate."""
    return "found: report-\udce9.txt"


@choreo.tool
def stuck_in_c() -> str:
    """Blocks in a socket read nobody answers (in C, no timeout), its pid written first to
    the folder ``USER_CODE_PIDS``."""
    (Path(os.environ["USER_CODE_PIDS"]) / str(os.getpid())).touch()
    left, right = socket.socketpair()
    with left, right:
        return left.recv(1).decode()


@choreo.tool
def crash_in_c() -> str:
    """Reads address 0: the interpreter dies of SIGSEGV."""
    return ctypes.string_at(0).decode()


@choreo.tool
def stuck() -> str:
    """Blocks its thread far past any timeout."""
    time.sleep(3600)
    return "late"


#: What the fuzz test (tests/platform/test_user_code.py) tells the next handler (keyed by the
#: task's input) or tool call (key ``TOOL``) to do: the mesh runs in the test's process, so
#: a plan may hold any object (an exception to raise, a value to return).
PLANS: dict[str, tuple[str, object]] = {}


def _follow(plan: tuple[str, object], hang: object) -> object:
    action, value = plan
    if action == "raise":
        assert isinstance(value, BaseException)
        raise value
    if action == "hang":
        return hang
    return value


@choreo.agent(timeout_s=1)
async def fuzzed(step: choreo.Step) -> choreo.Result:
    """Does what the task's plan says: raise, hang, return a value, or finish with it."""
    action, value = PLANS[step.input]
    if action == "hang":
        await asyncio.sleep(3600)
    if action == "finish":
        return step.finish("seen", writes={"seen": value}, text=str(value)[:50])
    return _follow((action, value), None)  # type: ignore[return-value]


#: The plan key of the tools (the fuzz test runs one task at a time).
TOOL = "tool"


@choreo.tool
def chaos() -> object:
    """Does what the tools' plan says: raise, hang past its timeout, return a value."""
    action, value = PLANS[TOOL]
    if action == "hang":
        time.sleep(3)  # past the tool's timeout of 1 s; its thread comes back later
    return _follow((action, value), None)


@choreo.tool
async def chaos_async() -> object:
    """``chaos``, as a coroutine (raising in the event loop, not a thread)."""
    action, value = PLANS[TOOL]
    if action == "hang":
        await asyncio.sleep(3600)
    return _follow((action, value), None)
