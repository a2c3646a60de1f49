"""Python functions as tools: found by import path, described by their signature.

A function decorated with ``@choreo.tool`` carries its schema (and options); any other typed
function gets one derived the same way when the mesh names it. Sync functions run on the
agent's own tool threads (choreo.tools.threads) so they never block the agent's event loop.
Whatever the function raises, of any class, is the call's failure, logged with its traceback.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import ValidationError

from choreo.schemas.errors import ToolError
from choreo.tools.base import ToolFailure
from choreo.tools.boundary import UserCodeRaised, describe, guarded
from choreo.tools.schema import FunctionSchema, function_schema
from choreo.tools.threads import ToolThreads

log = logging.getLogger(__name__)

#: Threads of a tool made on its own, outside an agent's tool box.
SOLO_THREADS = 4
#: The attribute ``@choreo.tool`` sets on the function it decorates.
MARK = "__choreo_tool__"


@dataclass(frozen=True)
class ToolInfo:
    """What ``@choreo.tool`` records about a function: its schema and its timeout."""

    schema: FunctionSchema
    timeout_s: float | None = None


def info_of(func: Callable[..., Any]) -> ToolInfo:
    """The function's ``@choreo.tool`` info, or info derived from its signature."""
    info = getattr(func, MARK, None)
    return info if isinstance(info, ToolInfo) else ToolInfo(function_schema(func))


def as_result_text(value: Any) -> str:
    """A tool's return value as the ``tool`` message's text: strings as they are, anything
    else as JSON (pydantic models, dataclasses and dates included)."""
    if isinstance(value, str):
        return value
    return pydantic_core.to_json(value, fallback=str).decode()


class FunctionTool:
    """One Python function offered to the model."""

    server: str | None = None

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        threads: ToolThreads | None = None,
        timeout_s: float | None = None,
    ) -> None:
        """``threads`` runs the function when it is not ``async`` (the agent's; by default
        the tool's own, of ``SOLO_THREADS``)."""
        info = info_of(func)
        self.threads = threads or ToolThreads(SOLO_THREADS)
        self.func = func
        self.schema = info.schema
        self.name = info.schema.name
        self.description = info.schema.description
        self.parameters = info.schema.parameters
        #: The function's own timeout, else the caller's default.
        self.timeout_s = info.timeout_s or timeout_s

    async def call(self, arguments: dict[str, Any]) -> str:
        try:
            kwargs = self.schema.validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise ToolFailure("invalid", f"invalid arguments for {self.name}: {problems}") from None
        try:
            if inspect.iscoroutinefunction(self.func):
                value = await guarded(self.func(**kwargs))
            else:
                value = await guarded(self.threads.run(self.func, self.name, **kwargs))
        except ToolFailure:
            raise
        except ToolError as exc:  # the tool's own answer to the model: no bug, not logged
            raise ToolFailure("error", str(exc)) from None
        except Exception as exc:  # the model is told; the step goes on
            cause = exc.original if isinstance(exc, UserCodeRaised) else exc
            log.warning("tool raised", extra={"tool": self.name}, exc_info=cause)
            raise ToolFailure("error", describe(cause)) from None
        try:
            return as_result_text(value)
        except Exception as exc:  # a value with no JSON form, whose str() fails too
            reason = f"{self.name} returned an unusable value: {describe(exc)}"
            raise ToolFailure("error", reason) from None
