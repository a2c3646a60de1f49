"""Choreo Mesh: an event-driven mesh of AI agents on Kafka.

This package is the public Python surface: what it exports (``__all__``) is promised across
releases. Everything under ``choreo.services`` (the services and their runtime) and
``choreo.schemas`` (the wire records) stays importable, but is not promised.

Write an agent as Python code (``agent``): an async function that gets one event as a
read-only ``Step`` (input, state snapshot and version, trace id, hop, ``BudgetLeft``, the
model tiers through ``Step.complete``, a logger bound to the trace) and returns a ``Result``
(``step.emit``, ``step.finish``, ``step.fail``)::

    import choreo

    @choreo.agent
    async def lookup(step: choreo.Step) -> choreo.Result:
        \"\"\"Finds the order the customer asks about.\"\"\"
        order = find_order(step.input)
        if order is None:
            return step.fail("no such order")
        return step.emit("order.found", writes={"order": order})

Give a model agent tools it calls (``tool``): typed functions whose JSON Schema comes from
their hints and docstring; raise ``ToolError`` to tell the model what went wrong::

    @choreo.tool
    async def refund_policy(days_since_delivery: int) -> str:
        \"\"\"Whether an order can still be refunded.

        Args:
            days_since_delivery: Days since the order was delivered.
        \"\"\"

Name both in the mesh spec by import path (``kind: python``, ``handler: orders:lookup``;
``tools: [{function: support_tools:refund_policy}, {mcp: ..., command: [...]}]``), then run
the mesh from the command line: ``choreo up mesh.yaml``, ``choreo submit mesh.yaml TEXT
--wait``, ``choreo trace ID`` (one agent: ``choreo run agent --mesh mesh.yaml --agent
NAME``). docs/AGENTS.md has a complete example; the wire contract for producers in any
language is in docs/CONTRACT.md.
"""

from importlib.metadata import PackageNotFoundError, version

from choreo.agent.sdk import Agent, Reply, Result, Step, agent
from choreo.budget.left import BudgetLeft
from choreo.schemas.errors import BudgetExhausted, ChoreoError, HandlerError, ToolError
from choreo.tools.decorator import tool

try:
    __version__ = version("choreo-mesh")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Agent",
    "BudgetExhausted",
    "BudgetLeft",
    "ChoreoError",
    "HandlerError",
    "Reply",
    "Result",
    "Step",
    "ToolError",
    "__version__",
    "agent",
    "tool",
]

# One import path in reprs and help(): choreo.Step, not choreo.agent.sdk.Step.
for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__") and not isinstance(_obj, str):
        _obj.__module__ = __name__
del _name, _obj
