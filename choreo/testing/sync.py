"""``SyncMesh``: choreo.testing.Mesh for synchronous code and plain pytest tests.

The mesh runs on an event loop in a thread of its own (choreo.client.sync.LoopThread), held
open by one task there from construction to ``close``; ``client`` is a
choreo.client.SyncClient over the mesh's own async client on that loop, so the producer, the
readers and the results follower live as long as the mesh. Every blocking call (the client's,
and ``run``) is guarded: if a service of the mesh ends meanwhile, the call stops and raises
``ServiceFailed`` with the service's error.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from choreo.client.sync import LoopThread, SyncClient
from choreo.observe.settings import Settings
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec
from choreo.testing.errors import ServiceFailed
from choreo.testing.mesh import Mesh

T = TypeVar("T")


class SyncMesh:
    """A mesh under test, for code that does not use asyncio::

        with choreo.testing.SyncMesh("examples/writer-editor/mesh.yaml") as mesh:
            trace_id = mesh.client.submit("Write about event sourcing")
            assert mesh.client.wait(trace_id, timeout_s=30).status == "completed"

    The arguments are choreo.testing.Mesh's; the constructor returns once the mesh is ready
    (or raises what entering it raised). ``client`` is a blocking client of this mesh;
    ``run(coroutine)`` awaits any coroutine on the mesh's loop (with ``mesh.mesh``, the
    async Mesh, for its services); ``close`` (or leaving the ``with``) stops the mesh and
    its thread, is idempotent, and raises ``ServiceFailed`` if a service had ended on its
    own.
    """

    def __init__(
        self, spec: MeshSpec | str | os.PathLike[str], bootstrap: str | None = None, **options: Any
    ) -> None:
        self.mesh = Mesh(spec, bootstrap, **options)
        self._loop = LoopThread("choreo-testing-mesh")
        self._release = asyncio.Event()
        entered: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._held = asyncio.run_coroutine_threadsafe(self._hold(entered), self._loop.loop)
        try:
            entered.result()
        except BaseException:
            self._loop.close()
            raise
        self.client = SyncClient.over(self.mesh.client, self.run)
        self._closed = False

    async def _hold(self, entered: concurrent.futures.Future[None]) -> None:
        """Enter the mesh and keep it entered until ``close``: this task is its host."""
        try:
            async with self.mesh:
                entered.set_result(None)
                await self._release.wait()
        except BaseException as exc:
            if not entered.done():
                entered.set_exception(exc)
            raise

    @property
    def spec(self) -> MeshSpec:
        """The spec the services run (pointed at the servers this mesh started)."""
        return self.mesh.spec

    @property
    def path(self) -> Path | None:
        """The spec's file, or None when a MeshSpec was given."""
        return self.mesh.path

    @property
    def bootstrap(self) -> str:
        """The broker's address."""
        return self.mesh.bootstrap

    @property
    def settings(self) -> Settings:
        """The services' settings, the mesh's own topic prefix among them."""
        return self.mesh.settings

    @property
    def topics(self) -> Topics:
        """The mesh's topic names under its prefix."""
        return self.mesh.topics

    @property
    def failure(self) -> ServiceFailed | None:
        """Why the mesh stopped on its own (a service ended), or None while all run."""
        return self.mesh.failure

    def model_url(self, tier: str) -> str:
        """The base URL this mesh serves scripted ``tier`` at (see Mesh.model_url)."""
        return self.mesh.model_url(tier)

    @property
    def sandbox_url(self) -> str | None:
        """The HTTP address of the sandbox this mesh runs, or None."""
        return self.mesh.sandbox_url

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` on the mesh's loop and return what it returns; raises
        ``ServiceFailed`` if a service ends first (``work`` is then cancelled), and
        ``RuntimeError`` once the mesh is closed."""
        if self._loop.closed:
            work.close()
            raise RuntimeError("the mesh is closed")
        return self._loop.call(self.mesh.guard(work))

    def close(self) -> None:
        """Stop the mesh (agents finish and commit their steps) and its thread; idempotent.
        Raises ``ServiceFailed`` if a service had ended on its own."""
        if self._loop.closed:
            return
        self._loop.loop.call_soon_threadsafe(self._release.set)
        try:
            self._held.result()
        finally:
            self._loop.close()

    def __enter__(self) -> SyncMesh:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def close_all(meshes: list[SyncMesh]) -> None:
    """Close every mesh, newest first, even when one raises; then raise the first error
    (a ``ServiceFailed``: a service of that mesh had ended on its own)."""
    errors: list[Exception] = []
    for mesh in reversed(meshes):
        try:
            mesh.close()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
