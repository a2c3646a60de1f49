"""``choreo.SyncClient``: choreo.client.Client for scripts and code that does not use asyncio.

Every method is the async client's, blocking. The async client runs on an event loop in a
thread of its own, opened once and kept: its producer and readers (and the follower of the
results topic that makes ``wait`` cheap) live across calls, and it works where ``asyncio.run``
cannot (inside a notebook or any code that already runs a loop). A loop per call would
connect, fetch metadata and (for ``wait``) position a follower on every call.

Calls carry the caller's context variables to the loop (``asyncio.run_coroutine_threadsafe``
schedules them in a copy of the calling thread's context), so a submission made inside the
caller's OpenTelemetry span is that span's child. A call interrupted (Ctrl-C) cancels its work
on the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from choreo.client.client import Client
from choreo.observe.settings import Settings
from choreo.schemas.topics import Topics

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncClient, P], T]:
    """``method`` of Client as a blocking method of SyncClient, with its signature and doc."""

    def call(self: SyncClient, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._call(method(self._client, *args, **kwargs))

    call.__name__ = call.__qualname__ = method.__name__
    call.__doc__ = f"Blocking ``Client.{method.__name__}``. " + (method.__doc__ or "")
    return call


class LoopThread:
    """An event loop running in a daemon thread of its own, for blocking code to call into.

    ``call(work)`` runs the coroutine ``work`` on the loop and blocks until it ends,
    returning its result or raising its error; the caller's context variables go with it,
    and a caller interrupted while it waits (Ctrl-C) cancels the work. ``close`` stops the
    loop and joins the thread, and is idempotent; a call after it raises ``RuntimeError``.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        """True once ``close`` has run."""
        return self.loop.is_closed()

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the loop; block until it ends; return its result or raise."""
        if self.loop.is_closed():
            work.close()
            raise RuntimeError(f"{self._thread.name} is closed")
        future = asyncio.run_coroutine_threadsafe(work, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # interrupted while waiting: stop the work too
            raise

    def close(self) -> None:
        """Stop the loop and join its thread; idempotent."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class SyncClient:
    """A blocking client of the mesh on ``bootstrap`` under topic ``prefix``; the arguments,
    defaults and errors are choreo.client.Client's.

    ::

        with SyncClient() as client:
            trace_id = client.submit("Write about event sourcing")
            print(client.wait(trace_id, timeout_s=60).output)

    It connects at construction (and raises there if no broker answers); ``close`` (or leaving
    the ``with``) stops the client and its thread, and is idempotent.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        prefix: str | None = None,
        settings: Settings | None = None,
        client_id: str = "choreo-client",
    ) -> None:
        self._client = Client(bootstrap, prefix=prefix, settings=settings, client_id=client_id)
        self._loop: LoopThread | None = LoopThread("choreo-client")
        self._runs: Callable[[Coroutine[Any, Any, Any]], Any] = self._loop.call
        self._closed = False
        try:
            self._call(self._client.__aenter__())
        except BaseException:
            self._loop.close()
            raise

    @classmethod
    def over(cls, client: Client, runs: Callable[[Coroutine[Any, Any, Any]], Any]) -> SyncClient:
        """A blocking face of ``client``, an async Client open on an event loop of someone
        else's, whose coroutines ``runs`` runs there to their end (choreo.testing.SyncMesh's
        client). Closing this face closes neither the client nor that loop: their owner does.
        """
        face = cls.__new__(cls)
        face._client, face._runs, face._loop, face._closed = client, runs, None, False
        return face

    @property
    def bootstrap(self) -> str:
        """The broker address the client talks to."""
        return self._client.bootstrap

    @property
    def settings(self) -> Settings:
        """The settings in force (the topic prefix among them)."""
        return self._client.settings

    @property
    def topics(self) -> Topics:
        """The mesh's topic names under the prefix."""
        return self._client.topics

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            work.close()
            raise RuntimeError("the client is closed")
        return cast(T, self._runs(work))

    def run(
        self,
        work: Callable[Concatenate[Client, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``await work(client, *args, **kwargs)`` on the client's loop with the async client,
        and return what it returns: for async helpers built on Client."""

        async def go() -> T:
            return await work(self._client, *args, **kwargs)

        return self._call(go())

    def close(self) -> None:
        """Close the client, then stop its loop and thread; idempotent."""
        if self._closed:
            return
        try:
            if self._loop is not None:
                self._call(self._client.close())
        finally:
            self._closed = True
            if self._loop is not None:
                self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    submit = _blocking(Client.submit)
    send = _blocking(Client.send)
    admission = _blocking(Client.admission)
    ensure_running = _blocking(Client.ensure_running)
    result = _blocking(Client.result)
    wait = _blocking(Client.wait)
    trace = _blocking(Client.trace)
    hops = _blocking(Client.hops)
    steps = _blocking(Client.steps)
    read = _blocking(Client.read)
    records = _blocking(Client.records)
    state = _blocking(Client.state)
    history = _blocking(Client.history)
    budget = _blocking(Client.budget)
    replay = _blocking(Client.replay)
    escalations = _blocking(Client.escalations)
    resume = _blocking(Client.resume)
    close_escalation = _blocking(Client.close_escalation)
    dlq = _blocking(Client.dlq)
    requeue = _blocking(Client.requeue)
    traces = _blocking(Client.traces)
    groups = _blocking(Client.groups)
    positions = _blocking(Client.positions)
    grant = _blocking(Client.grant)
    doctor = _blocking(Client.doctor)
