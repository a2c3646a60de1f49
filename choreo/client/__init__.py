"""The Python client of a running mesh: ``Client`` (async) and ``SyncClient`` (blocking).

Submit tasks, wait for their results, read a trace, its state at any version and its budget,
resolve escalations and list dead letters, on any broker, under any topic prefix; docs/CLIENT.md
shows a complete example. The ``choreo`` command line is argument parsing and views over it.

Importing this package is light: the errors (choreo.client.errors) and the typed answers
(choreo.client.reports) load at once, the clients (and Kafka with them) on first use (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from choreo.client.errors import (
    DeadLetterNotFound,
    EscalationError,
    MeshNotRunning,
    ResultTimeout,
    TraceNotFound,
    VersionNotFound,
)
from choreo.client.reports import (
    Admission,
    AgentGroup,
    DeadLetterEntry,
    Replay,
    Submission,
    Trace,
    TraceBudget,
    TracePage,
    TraceSummary,
)

if TYPE_CHECKING:
    from choreo.client.client import Client
    from choreo.client.sync import SyncClient

_LAZY = {"Client": "choreo.client.client", "SyncClient": "choreo.client.sync"}

__all__ = [
    "Admission",
    "AgentGroup",
    "Client",
    "DeadLetterEntry",
    "DeadLetterNotFound",
    "EscalationError",
    "MeshNotRunning",
    "Replay",
    "ResultTimeout",
    "Submission",
    "SyncClient",
    "Trace",
    "TraceBudget",
    "TraceNotFound",
    "TracePage",
    "TraceSummary",
    "VersionNotFound",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
