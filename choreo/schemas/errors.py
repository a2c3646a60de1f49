"""The root of the error tree, and the errors of the agent and tool SDK.

The root lives in the wire-contract layer, which imports nothing of ours, so every layer
can hang its errors from it. The whole tree is drawn in ``choreo.errors``, which re-exports
every class a user may catch.
"""

from __future__ import annotations


class ChoreoError(Exception):
    """Root of every error Choreo raises to its users: ``except choreo.ChoreoError`` catches
    them all. Each subclass also derives from the builtin it stands for where there is one
    (``SpecError`` is a ``ValueError``), so code catching the builtin keeps working."""


class ToolError(ChoreoError):
    """Raise in a tool to tell the model why the call failed (e.g. "no order 42").

    The message is sent to the model as the tool's result, flagged as an error, so the model
    can correct its arguments or answer without the tool. Any other exception a tool raises
    is reported the same way, prefixed with its class name.
    """


class HandlerError(ChoreoError):
    """An agent function returned something other than a ``choreo.Result``, or an agent was
    declared wrongly; the step ends as failed with this message."""


class UndeclaredRead(HandlerError, KeyError):
    """A Python agent read a state field its ``reads:`` does not declare. Its events carry
    only the fields it declares, so the value is not there to read; the step ends as failed
    with this message, which names the field and the agent. ``.field`` is the field."""

    def __init__(self, agent: str, field: str, reads: list[str]) -> None:
        super().__init__(
            f"{agent} read state field {field!r}, not in its reads {sorted(reads)}: "
            "declare it under the agent's reads: in the mesh"
        )
        self.field = field

    def __str__(self) -> str:  # a KeyError would print its message quoted
        return str(self.args[0])


class BudgetExhausted(ChoreoError):
    """A step asked to spend (a model call) with a trace budget used up; raised by
    ``Step.complete``. Left uncaught, the step is refused and the trace halts for a human,
    as when any agent runs over budget."""
