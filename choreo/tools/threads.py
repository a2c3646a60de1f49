"""Where an agent's synchronous tools run: a bounded set of daemon threads of its own.

A thread cannot be stopped from outside, so a sync tool that never returns (``time.sleep``
for an hour, a socket read with no timeout) keeps its thread whatever the call's timeout
says. Run in the loop's shared default executor, a few such calls starve every other sync
tool of the process, and the interpreter joins the hung threads at exit, so the agent
ignores SIGTERM until it is killed and its drain never runs. Here each agent has
``tool_threads`` slots (the spec's); a call whose caller gave up (its timeout) keeps its slot
until its thread really returns, and is counted; when every slot is held by such calls, a
call fails at once saying so instead of waiting. The threads are daemons: the process exits
without waiting for them. A tool that can hang for real is better declared
``isolation: process`` (choreo.tools.isolated), which is killed at its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from choreo.tools.base import ToolFailure

log = logging.getLogger(__name__)


class ToolThreads:
    """At most ``size`` sync calls at once, each on a daemon thread named ``thread_name``."""

    def __init__(self, size: int, thread_name: str = "choreo-tool") -> None:
        self.size = size
        self.thread_name = thread_name
        self._slots = asyncio.Semaphore(size)
        #: Calls given up by their caller whose thread still runs: each holds a slot.
        self.abandoned = 0

    async def run(self, func: Callable[..., Any], name: str, /, **kwargs: Any) -> Any:
        """``func(**kwargs)`` on a thread of its own; what it returns or raises (any
        ``BaseException`` included) comes back here.

        Raises ``ToolFailure`` when every slot is held by calls that were given up. Cancelling
        the caller (a timeout) leaves the thread to finish and free its slot then.
        """
        if self.abandoned >= self.size:
            raise ToolFailure(
                "error",
                f"{name} not run: all {self.size} tool threads of this agent still run calls "
                "that timed out (a tool that hangs: declare it isolation: process)",
            )
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        given_up = False

        def settle(value: Any, error: BaseException | None) -> None:
            self._slots.release()
            if given_up:
                self.abandoned -= 1
                log.warning(
                    "tool thread returned after its call timed out",
                    extra={"tool": name, "abandoned": self.abandoned},
                )
                return  # nobody waits for the answer
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(value)

        def work() -> None:
            value: Any = None
            error: BaseException | None = None
            try:
                value = func(**kwargs)
            except BaseException as exc:  # carried to the caller, whatever it is
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process stops
                loop.call_soon_threadsafe(settle, value, error)

        threading.Thread(target=work, name=f"{self.thread_name}:{name}", daemon=True).start()
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            if not answer.done():
                given_up = True
                self.abandoned += 1
                log.warning(
                    "tool thread abandoned: the call was given up while it runs",
                    extra={"tool": name, "abandoned": self.abandoned, "slots": self.size},
                )
            raise
