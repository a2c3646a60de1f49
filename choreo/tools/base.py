"""The one shape every tool has, whatever serves it."""

from __future__ import annotations

from typing import Any, Protocol


class ToolFailure(Exception):
    """A tool call that did not produce a result; the message is what the model is told.

    ``status`` is a bounded label for metrics and hop records: ``error`` (the tool raised or
    reported an error), ``invalid`` (the arguments did not fit the schema) or ``timeout``.
    Not a ``ChoreoError``: it never leaves the tool loop (``choreo.tools.loop``), which sends
    it to the model as the call's result.
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class Tool(Protocol):
    """A function the model may call: a name, a description and a JSON Schema of its
    arguments, offered in the request's ``tools``; ``call`` runs it.

    ``call`` returns the result as text for the ``tool`` message, or raises ``ToolFailure``;
    any other exception is turned into a failure by the caller (``choreo.tools.loop``).
    """

    name: str
    description: str
    parameters: dict[str, Any]
    #: Where the tool lives, for hop records: ``None`` for in-process tools, else a label.
    server: str | None
    #: Seconds a call may take before it is abandoned; ``None``: the agent's default.
    timeout_s: float | None

    async def call(self, arguments: dict[str, Any]) -> str: ...


def openai_tool(tool: Tool) -> dict[str, Any]:
    """The tool as one entry of a chat request's ``tools`` (OpenAI function-calling shape)."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }
