"""The errors the public API raises, under one root.

::

    ChoreoError
    ├── ToolError          raised by a tool: its message goes back to the model as the result
    ├── HandlerError       a ``@choreo.agent`` function broke the step's contract
    └── BudgetExhausted    a step asked for a model call with a trace budget used up
"""

from __future__ import annotations


class ChoreoError(Exception):
    """Root of every error the ``choreo`` API raises."""


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
