"""``@choreo.tool``: a typed Python function the model of a model agent may call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from choreo.tools.function import MARK, ToolInfo
from choreo.tools.schema import function_schema

F = TypeVar("F", bound=Callable[..., Any])


@overload
def tool(func: F, /) -> F: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout_s: float | None = None
) -> Callable[[F], F]: ...


def tool(
    func: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
) -> F | Callable[[F], F]:
    """Mark a function (``async def`` or plain ``def``) as a tool the model may call.

    The model sees the function's name (or ``name``), its docstring's summary (or
    ``description``) and a JSON Schema built from its type hints, with each parameter's
    description taken from the docstring's ``Args:`` section; ``Annotated[int, Field(ge=1)]``
    adds bounds. The model's arguments are validated against the schema before the call: a
    call that does not fit is answered with what was wrong, and the function does not run.

    Whatever the function returns is sent back to the model: a string as it is, anything
    else as JSON. Raise ``choreo.ToolError("...")`` to send the model an error message; any
    other exception is sent too, as ``ExceptionName: message``. A call running longer than
    ``timeout_s`` (default: the agent's ``tool_timeout_s``) is abandoned and reported as a
    timeout. The function stays an ordinary function: call it directly in your tests.

    Name it in the mesh spec by import path, relative to the mesh file's folder::

        tools:
          - function: support_tools:refund_policy

    Raises ``TypeError`` at decoration when a parameter has no type hint or is variadic.
    """

    def mark(target: F) -> F:
        schema = function_schema(target, name=name, description=description)
        setattr(target, MARK, ToolInfo(schema, timeout_s))
        return target

    return mark(func) if func is not None else mark
