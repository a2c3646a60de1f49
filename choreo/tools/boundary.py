"""The line between the mesh and user code (handlers, tools, MCP calls): nothing crosses it
but a result or an ordinary exception.

Python lets code raise things that are not ``Exception``\\ s: ``KeyboardInterrupt``,
``SystemExit`` (``sys.exit``), ``GeneratorExit``, ``asyncio.CancelledError`` and libraries'
own ``BaseException`` subclasses (``gevent.Timeout``, ``trio.Cancelled``). Let through, the
first two stop the event loop (asyncio re-raises them out of ``run``) and a cancellation
leaves the step with no outcome. ``guarded`` turns each into ``UserCodeRaised``, which the
caller ends the step with.

The one thing let through is the service's own cancellation (its shutdown, a drained
partition, a timeout around the call): asyncio records it on the task (``Task.cancelling``),
so a ``CancelledError`` while the current task is being cancelled is the service's, and one
raised while it is not (``raise CancelledError``, an inner task cancelled by the user's code
and awaited) is the user's. Signals never arrive as exceptions here: the services handle
them in the event loop (``choreo.kafka.runner``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class UserCodeRaised(Exception):
    """User code raised a ``BaseException`` that is not an ``Exception``; ``original`` is it.

    Its message is the original's ``Type: message``, the step's reason.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(describe(original))
        self.original = original


def describe(exc: BaseException) -> str:
    """``Type: message`` (just ``Type`` when the message is empty, or cannot be made: an
    exception's ``__str__`` is user code too)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def own_cancellation() -> bool:
    """Whether the current task is being cancelled by the service (``Task.cancel``)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def guarded(call: Awaitable[T]) -> T:
    """Await ``call``; a ``BaseException`` that is not an ``Exception`` comes out as
    ``UserCodeRaised``, except the service's own cancellation, which goes on as it is.

    Await it inside the task that should survive (wrap the call itself, not the task that
    runs it: asyncio re-raises ``KeyboardInterrupt`` and ``SystemExit`` out of a task).
    """
    try:
        return await call
    except Exception:
        raise
    except asyncio.CancelledError as exc:
        if own_cancellation():
            raise
        raise UserCodeRaised(exc) from None
    except BaseException as exc:
        raise UserCodeRaised(exc) from None
