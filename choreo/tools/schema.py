"""A Python function's tool schema: name, description and the JSON Schema of its arguments.

The idea follows the OpenAI Agents SDK's function tools: the name is the function's, the
description is its docstring's summary, each parameter's description comes from the
docstring's ``Args:`` section (Google style), and the JSON Schema comes from the type hints
through a pydantic model, which also validates the model's arguments before the call.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):"
    r"\s*$"
)
_ARG = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclass(frozen=True)
class FunctionSchema:
    """What the model is told about a function, and the model that checks its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]
    arguments: type[BaseModel]

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments for the call, converted to the hinted types.

        Raises ``pydantic.ValidationError`` when they do not fit.
        """
        checked = self.arguments.model_validate(arguments)
        return {name: getattr(checked, name) for name in type(checked).model_fields}


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary (text before the first section) and each ``Args:`` entry's description.

    An entry is ``name: text`` (or ``name (type): text``) at the section's first indent;
    deeper lines continue the entry before them.
    """
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    entry_indent: int | None = None
    for line in inspect.cleandoc(doc or "").splitlines():
        header = _SECTION.match(line)
        if header:
            section, current, entry_indent = header.group(1), None, None
        elif section is None:
            summary.append(line)
        elif section in ("Args", "Arguments", "Parameters") and line.strip():
            indent = len(line) - len(line.lstrip())
            entry = _ARG.match(line)
            if entry and (entry_indent is None or indent <= entry_indent):
                entry_indent = indent
                current = entry.group(1).lstrip("*")
                args[current] = entry.group(2).strip()
            elif current is not None:
                args[current] = f"{args[current]} {line.strip()}"
    return "\n".join(summary).strip(), args


def function_schema(
    func: Callable[..., Any], *, name: str | None = None, description: str | None = None
) -> FunctionSchema:
    """The schema of ``func``'s parameters (all of them; ``*args``/``**kwargs`` refused).

    Raises ``TypeError`` for a parameter without a type hint or a variadic one: the model
    could not be told what to send.
    """
    summary, docs = parse_docstring(inspect.getdoc(func))
    hints = typing.get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{func.__qualname__}: *{param.name} cannot be a tool argument")
        if param.name not in hints:
            raise TypeError(f"{func.__qualname__}: parameter {param.name!r} needs a type hint")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], Field(default, description=docs.get(param.name)))
    tool_name = name or func.__name__
    model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    parameters = model.model_json_schema()
    parameters.pop("title", None)
    for prop in parameters.get("properties", {}).values():
        prop.pop("title", None)
    return FunctionSchema(tool_name, description or summary or tool_name, parameters, model)
