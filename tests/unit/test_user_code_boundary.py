"""The parts of the step boundary that need no broker: telling the service's own cancellation
from user code's, the agent's tool threads, the providers' tool-name rule, and the markers
of records whose step ended the process."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from choreo.agent.markers import StepMarkers, Verdict
from choreo.tools.base import ToolFailure
from choreo.tools.boundary import UserCodeRaised, guarded
from choreo.tools.names import NAME_RULE, capped, fit_names
from choreo.tools.threads import ToolThreads


class LibraryCancelled(BaseException):
    pass


@pytest.mark.parametrize(
    "raised",
    [
        KeyboardInterrupt("pressed"),
        SystemExit(3),
        GeneratorExit(),
        LibraryCancelled("scope"),
        asyncio.CancelledError("inner scope"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_base_exception_from_user_code_comes_out_as_an_ordinary_one(
    raised: BaseException,
) -> None:
    async def user_code() -> None:
        raise raised

    async def main() -> BaseException:
        with pytest.raises(UserCodeRaised) as caught:
            await guarded(user_code())
        return caught.value.original

    assert asyncio.run(main()) is raised


def test_the_services_own_cancellation_goes_through_the_boundary() -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def user_code() -> None:
            started.set()
            await asyncio.sleep(3600)

        task = asyncio.create_task(guarded(user_code()))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_timeout_around_the_call_is_not_the_user_codes_cancellation() -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(guarded(asyncio.sleep(3600)), 0.01)

    asyncio.run(main())


def test_a_hung_tool_thread_keeps_its_slot_until_it_returns_and_then_frees_it() -> None:
    release = threading.Event()

    def hang() -> str:
        release.wait()
        return "late"

    async def main() -> None:
        threads = ToolThreads(1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(threads.run(hang, "hang"), 0.05)
        assert threads.abandoned == 1
        with pytest.raises(ToolFailure, match="all 1 tool threads"):
            await threads.run(lambda: "never", "next")  # fails at once, never waits
        release.set()
        for _ in range(1000):  # the thread's end reaches the loop
            if threads.abandoned == 0:
                break
            await asyncio.sleep(0.01)
        assert await threads.run(lambda: "now", "next") == "now"

    asyncio.run(main())


def test_whatever_a_tool_thread_raises_reaches_the_caller() -> None:
    def interrupt() -> str:
        raise KeyboardInterrupt("in a thread")

    async def main() -> None:
        with pytest.raises(UserCodeRaised, match="KeyboardInterrupt: in a thread"):
            await guarded(ToolThreads(2).run(interrupt, "interrupt"))

    asyncio.run(main())


class Named:
    """A tool as far as the name rule cares."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: str | None = "mcp:many"


@given(st.lists(st.text(max_size=80).filter(lambda n: n != "sandbox"), max_size=20, unique=True))
def test_every_tool_offered_has_a_name_the_providers_accept_and_no_name_twice(
    names: list[str],
) -> None:
    """(Two tools listed under one valid name are the tool box's error, not renamed.)"""
    tools = [Named(n) for n in names]
    kept, notes = fit_names(tools, ["sandbox"])  # type: ignore[arg-type]
    offered = [t.name for t in kept]
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name) for name in offered)
    assert len(set(offered)) == len(offered) and "sandbox" not in offered
    assert len(notes) == sum(not NAME_RULE.fullmatch(n) for n in names)


@given(st.integers(0, 300), st.integers(1, 200))
def test_the_tools_offered_are_capped_with_a_note(count: int, cap: int) -> None:
    offered, note = capped(list(range(count)), cap, "fast")
    assert offered == list(range(min(count, cap)))
    assert (note is None) == (count <= cap)


def record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, 0, 0, None, b"", None, 0, 0, [])


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_record_running_when_its_process_died_is_suspected_then_convicted(
    tmp_path: Path,
) -> None:
    markers = StepMarkers(tmp_path)
    markers.running(record(7), 0)
    assert markers.judge(record(7)) == Verdict()  # running here: not a death
    pid = dead_pid()
    (tmp_path / "t-0-7").write_text(f"{pid} gone 0")
    assert markers.judge(record(7)) == Verdict(deaths=1, convicted=False)
    (tmp_path / "t-0-7").write_text(f"{pid} gone 1")
    assert markers.judge(record(7)) == Verdict(deaths=2, convicted=True)
    markers.convicted(record(7), 2)  # kept until its outcome is committed
    assert markers.judge(record(7)) == Verdict(deaths=2, convicted=True)
    markers.committed({TopicPartition("t", 0): 7})
    assert markers.judge(record(7)) == Verdict(deaths=2, convicted=True)
    markers.committed({TopicPartition("t", 0): 8})
    assert markers.judge(record(7)) == Verdict()
