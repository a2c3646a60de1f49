"""A pytest plugin for testing your own mesh: opt in from your ``conftest.py`` with
``pytest_plugins = ["choreo.testing.plugin"]``.

Fixtures:

``choreo_broker`` (session)
    The test run's broker (choreo.kafka.broker.BrokerHandle; ``.bootstrap`` is its
    address), from choreo.testing.broker.shared_broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set,
    else a testcontainers Kafka where Docker answers, else the embedded broker, started once
    and stopped when the run ends.

``choreo_mesh`` (function)
    Starts a mesh on that broker: ``choreo_mesh(spec, **options)`` returns a ready
    choreo.testing.SyncMesh (the options are choreo.testing.Mesh's: ``watchdog``,
    ``agents``, ``settings``...), each under a fresh topic prefix, stopped when the test
    ends. A service that ended on its own fails the test there, with its error.

::

    def test_the_desk_answers(choreo_mesh):
        mesh = choreo_mesh("mesh.yaml")
        trace_id = mesh.client.submit("Where is order 42?")
        assert mesh.client.wait(trace_id, timeout_s=60).status == "completed"
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from choreo.kafka.broker import BrokerHandle
from choreo.spec.mesh import MeshSpec
from choreo.testing.broker import shared_broker
from choreo.testing.sync import SyncMesh, close_all

#: ``choreo_mesh``'s type: a spec or its path, and Mesh's options, to a ready mesh.
StartMesh = Callable[..., SyncMesh]


@pytest.fixture(scope="session")
def choreo_broker() -> BrokerHandle:
    """The broker every mesh of the test run uses (choreo.testing.broker.shared_broker)."""
    return shared_broker()


@pytest.fixture
def choreo_mesh(choreo_broker: BrokerHandle) -> Iterator[StartMesh]:
    """Start meshes for one test on ``choreo_broker``; each stops when the test ends."""
    started: list[SyncMesh] = []

    def start(spec: MeshSpec | str | os.PathLike[str], **options: Any) -> SyncMesh:
        started.append(SyncMesh(spec, choreo_broker.bootstrap, **options))
        return started[-1]

    yield start
    close_all(started)
