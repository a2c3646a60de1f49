"""Choreo Mesh: an event-driven mesh of AI agents on Kafka.

This package is the public Python surface: what it exports (``__all__``) is promised across
releases, and so is ``choreo.errors``, the error tree. The layers below (``choreo.schemas``,
the wire records; ``choreo.kafka``, ``choreo.keeper``, ``choreo.agent``, ... the services and
their parts) stay importable, but are not promised. Importing ``choreo`` is cheap: each name
is imported from its module when first used (PEP 562), so ``import choreo`` loads no Kafka,
HTTP, metrics or tracing library.

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

Every error Choreo raises is a ``ChoreoError``: ``Step.complete`` raises ``BudgetExhausted``
before spending past a budget and ``ModelError`` when the call fails for good; the whole tree,
with every class, is in ``choreo.errors``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as type checkers and editors see them; imported lazily below
    from choreo.agent.sdk import Agent, Reply, Result, Step, agent
    from choreo.budget.left import BudgetLeft
    from choreo.client import Client, SyncClient
    from choreo.models.errors import ModelError
    from choreo.schemas.errors import BudgetExhausted, ChoreoError, HandlerError, ToolError
    from choreo.tools.decorator import tool

#: Each exported name and the module that defines it.
_EXPORTS = {
    "Agent": "choreo.agent.sdk",
    "BudgetExhausted": "choreo.schemas.errors",
    "BudgetLeft": "choreo.budget.left",
    "ChoreoError": "choreo.schemas.errors",
    "Client": "choreo.client",
    "HandlerError": "choreo.schemas.errors",
    "ModelError": "choreo.models.errors",
    "Reply": "choreo.agent.sdk",
    "Result": "choreo.agent.sdk",
    "Step": "choreo.agent.sdk",
    "SyncClient": "choreo.client",
    "ToolError": "choreo.schemas.errors",
    "agent": "choreo.agent.sdk",
    "tool": "choreo.tools.decorator",
}

__all__ = [
    "Agent",
    "BudgetExhausted",
    "BudgetLeft",
    "ChoreoError",
    "Client",
    "HandlerError",
    "ModelError",
    "Reply",
    "Result",
    "Step",
    "SyncClient",
    "ToolError",
    "__version__",
    "agent",
    "tool",
]


# ``choreo.agent`` names both a subpackage and the decorator exported here. The first import of
# a subpackage sets it as an attribute of this package, which would hide the decorator from
# ``__getattr__``; so import the subpackage now (its ``__init__`` is empty) and drop that
# attribute: from then on ``choreo.agent`` is the decorator, imported on first use.
importlib.import_module("choreo.agent")
del globals()["agent"]


def __getattr__(name: str) -> Any:
    """Import an exported name (or ``choreo.errors``) on first use (PEP 562) and keep it in
    this module.

    Its ``__module__`` becomes ``choreo``, so reprs and ``help()`` show one import path
    (``choreo.Step``, not ``choreo.agent.sdk.Step``), as httpx does for its exports.
    """
    if name == "errors":  # ``choreo.errors.SpecError`` after a bare ``import choreo``
        return importlib.import_module("choreo.errors")
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        value.__module__ = __name__
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("choreo-mesh")
    except PackageNotFoundError:  # imported from a checkout that was never installed
        return "0+unknown"
