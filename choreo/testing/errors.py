"""The errors of choreo.testing: a mesh under test whose service died, or that never got ready.

A light module (it imports only the error root), so ``choreo.errors`` can draw them in the
tree without loading Kafka.
"""

from __future__ import annotations

from choreo.schemas.errors import ChoreoError


class ServiceFailed(ChoreoError, RuntimeError):
    """A service of a mesh under test (``choreo.testing.Mesh``) ended before the mesh was
    stopped: its error, if it raised one, is ``__cause__`` and ``error``; ``service`` names
    it (``keeper``, ``agent writer #2``, ``watchdog``).

    Raised out of the ``async with Mesh(...)`` block (whatever the block was awaiting is
    cancelled), out of ``Mesh.guard`` and out of every call of a ``SyncMesh`` and its client,
    so a test fails with the service's error instead of waiting for a result that cannot
    come.
    """

    def __init__(self, service: str, error: BaseException | None) -> None:
        how = f"failed: {type(error).__name__}: {error}" if error else "stopped on its own"
        super().__init__(f"{service} of the mesh under test {how}")
        self.service = service
        self.error = error
        self.__cause__ = error  # wherever it is raised, the traceback shows the service's


class MeshNotReady(ChoreoError, TimeoutError):
    """A mesh under test did not get ready in time: the message names each consumer group
    that had not been given all its partitions (``group``: consumer group ids)."""

    def __init__(self, groups: list[str], timeout_s: float) -> None:
        super().__init__(
            f"the mesh under test was not ready within {timeout_s:g}s: no assignment of every "
            f"partition yet for {', '.join(groups)}"
        )
        self.groups = groups
