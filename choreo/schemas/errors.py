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


class BudgetExhausted(ChoreoError):
    """A step asked to spend (a model call) with a trace budget used up; raised by
    ``Step.complete``. Left uncaught, the step is refused and the trace halts for a human,
    as when any agent runs over budget."""
