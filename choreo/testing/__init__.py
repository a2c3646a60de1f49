"""Test your mesh: its services in one event loop on a real broker, scripted models in-process.

``Mesh`` (async) and ``SyncMesh`` (blocking, for plain pytest tests) run a mesh spec's keeper,
agents with their replicas and, if asked, its watchdog as tasks of one event loop, against a
real broker (the embedded one unless ``KAFKA_BOOTSTRAP_SERVERS`` says otherwise), with every
scripted model tier served over real HTTP from this process and the sandbox service when an
agent uses it. A mesh is ready in seconds, and a test submits and reads with the mesh's own
choreo.client ``Client``::

    from choreo.testing import Mesh

    async with Mesh("examples/writer-editor/mesh.yaml") as mesh:
        trace_id = await mesh.client.submit("Write about event sourcing")
        result = await mesh.client.wait(trace_id, timeout_s=30)

``choreo.testing.plugin`` is a pytest plugin (``pytest_plugins = ["choreo.testing.plugin"]``)
with a session broker and a mesh factory; docs/TESTING.md, "Testing your own mesh", has a
complete example. A service that ends on its own raises ``ServiceFailed`` with its error.

Importing this package is light (PEP 562): the harness, and Kafka with it, loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from choreo.testing.errors import MeshNotReady, ServiceFailed

if TYPE_CHECKING:
    from choreo.testing.broker import shared_broker
    from choreo.testing.mesh import Mesh
    from choreo.testing.sync import SyncMesh

_LAZY = {
    "Mesh": "choreo.testing.mesh",
    "SyncMesh": "choreo.testing.sync",
    "shared_broker": "choreo.testing.broker",
}

__all__ = ["Mesh", "MeshNotReady", "ServiceFailed", "SyncMesh", "shared_broker"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
