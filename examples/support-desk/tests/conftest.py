"""The support desk's tests run the mesh in the test process, on a real broker.

``choreo.testing.plugin`` gives the run one broker (``choreo_broker``: the embedded one, or
``KAFKA_BOOTSTRAP_SERVERS``) and a per-test mesh factory (``choreo_mesh``). In a project's
top-level ``conftest.py``, ``pytest_plugins = ["choreo.testing.plugin"]`` loads them; this
one sits in a sub-folder of the choreo repository, where pytest refuses ``pytest_plugins``,
so it imports the two fixtures instead. One mesh here serves every test of a module: it is
ready in seconds, each task has its own trace, and a service that dies fails the test that
was waiting on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from choreo.kafka.broker import BrokerHandle
from choreo.testing import SyncMesh
from choreo.testing.plugin import choreo_broker, choreo_mesh

__all__ = ["choreo_broker", "choreo_mesh"]  # the plugin's fixtures, for these tests

MESH = Path(__file__).resolve().parents[1] / "mesh.yaml"


@pytest.fixture(scope="module")
def desk(choreo_broker: BrokerHandle) -> Iterator[SyncMesh]:
    """The support desk, every agent of it, under a topic prefix of its own."""
    with SyncMesh(MESH, choreo_broker.bootstrap) as mesh:
        yield mesh
