"""MCP servers' tools, through the official ``mcp`` SDK (v1: ``ClientSession``).

A server is started over stdio (a child process of the agent) or reached over streamable
HTTP. Its session lives in a task of its own: the SDK's transports are anyio task groups,
which must be entered and left by the same task, while calls come from every step's task.
The tools are listed when the session first opens; a result the server flags ``isError`` is
an error message for the model, like a Python tool's exception.

A server can go away while the agent runs (its process exits, it restarts). The call in
flight then fails at once as a tool error for the model, and the session is dropped; the next
call opens a new one (starting the process again over stdio). A stdio server that exits is
noticed when its output ends; an HTTP server is pinged while a call to it is in flight (its
transport does not notice a response that never comes). A call an HTTP server refuses
because it no longer knows the session (it restarted between calls) never ran, so it is made
again on a new session. A call that times out keeps the session: the server is slow, not
gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, TextIO, cast

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp import ClientSession, McpError, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from choreo.kafka.children import lifeline_argv
from choreo.spec.mesh import McpServerSpec
from choreo.tools.base import ToolFailure
from choreo.tools.errors import McpUnavailable

log = logging.getLogger(__name__)

#: What the SDK's HTTP client answers for an HTTP server that no longer knows the session
#: (it restarted): the server refused the request without running it.
UNKNOWN_SESSION = 32600
#: Error codes of a call whose session is gone: the connection closed (the SDK's own code),
#: or the server no longer knows the session.
SESSION_GONE = frozenset({types.CONNECTION_CLOSED, UNKNOWN_SESSION})
#: Seconds between pings to an HTTP server while a call to it is in flight.
HEARTBEAT_S = 2.0
#: Lines and characters of a stdio server's stderr kept in an error that ends its session.
STDERR_LINES = 3
STDERR_CHARS = 4000
#: What the model is told about a call whose server went away.
GONE = "the server went away during the call; it is reconnected for the next call"


class _NotRun(ToolFailure):
    """The server refused the call without running it: the call may be made again."""


def result_text(result: types.CallToolResult) -> str:
    """A call's result as text: its text blocks, else its structured content as JSON."""
    parts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    parts += [
        f"[{block.type} content]"
        for block in result.content
        if not isinstance(block, types.TextContent)
    ]
    if not parts and result.structuredContent is not None:
        return json.dumps(result.structuredContent, sort_keys=True)
    return "\n".join(parts)


def root_cause(exc: BaseException) -> BaseException:
    """The error inside the SDK's task groups: ``ExceptionGroup: unhandled errors in a
    TaskGroup`` says nothing, its first leaf (not a cancellation) does."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def stderr_tail(errlog: IO[str] | None, lines: int = STDERR_LINES) -> str:
    """The last ``lines`` non-empty lines a stdio server wrote to its stderr, joined."""
    if errlog is None:
        return ""
    try:
        errlog.flush()
        errlog.seek(0)
        text = errlog.read()[-STDERR_CHARS:]
    except (OSError, ValueError):  # closed, or not a real file
        return ""
    return " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])


def session_gone(exc: BaseException) -> bool:
    """Whether a failed call means the session is lost (anything but an error the server
    answered, or a timeout)."""
    if isinstance(exc, McpError):
        return exc.error.code in SESSION_GONE
    return not isinstance(exc, TimeoutError)


@contextlib.asynccontextmanager
async def watched(
    read: MemoryObjectReceiveStream[Any], ended: asyncio.Event
) -> AsyncIterator[MemoryObjectReceiveStream[Any]]:
    """``read`` relayed through a new stream, with ``ended`` set when the server ends it
    (a stdio server's output closes when its process exits)."""
    send, receive = anyio.create_memory_object_stream[Any](0)

    async def relay() -> None:
        async with send:
            async for message in read:
                await send.send(message)
        ended.set()

    async with anyio.create_task_group() as group:
        group.start_soon(relay)
        yield receive
        group.cancel_scope.cancel()


class McpServer:
    """One MCP server of an agent: ``start`` opens the session and lists the tools, ``call``
    calls one (reconnecting first when the session was lost), ``aclose`` ends the session
    (and stops a stdio server)."""

    def __init__(self, spec: McpServerSpec, cwd: Path | None = None) -> None:
        self.spec = spec
        self.cwd = cwd
        self.tools: list[McpTool] = []
        self._session: ClientSession | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._gone = asyncio.Event()
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: A stdio server's stderr, kept to name why it failed (see ``stderr_tail``).
        self._errlog: TextIO | None = None

    @property
    def label(self) -> str:
        return f"mcp:{self.spec.mcp}"

    async def start(self) -> list[McpTool]:
        """Open the session and list the server's tools (kept to ``spec.tools`` if given).

        Raises ``McpUnavailable`` when the server cannot be started, reached or listed
        within the spec's ``timeout_s``.
        """
        async with self._lock:
            await self._open()
        log.info(
            "mcp server listed",
            extra={"server": self.spec.mcp, "tools": [t.name for t in self.tools]},
        )
        return self.tools

    async def _open(self) -> None:
        """Start the session's task and wait until it is ready (the caller holds the lock)."""
        self._ready, self._closing, self._gone = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._failure = None
        self._task = asyncio.create_task(self._hold(), name=self.label)
        try:
            await asyncio.wait_for(self._ready.wait(), self.spec.timeout_s)
        except TimeoutError:
            await self.aclose()
            raise McpUnavailable(
                f"{self.label}: no session within {self.spec.timeout_s:g}s"
            ) from None
        if self._failure is not None:
            await self.aclose()
            raise McpUnavailable(f"{self.label}: {self._failure}") from self._failure

    def _why(self, exc: BaseException) -> str:
        """What ended a session, in words: the SDK's real error, and a stdio server's last
        stderr lines (its own traceback, say)."""
        cause = root_cause(exc)
        reason = f"{type(cause).__name__}: {cause}"
        if isinstance(cause, FileNotFoundError) and self.spec.command:
            reason = f"command not found: {self.spec.command[0]!r} ({reason})"
        tail = stderr_tail(self._errlog)
        return f"{reason}; its stderr ends: {tail}" if tail else reason

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.spec.url is not None:
            return streamable_http_client(self.spec.url)
        assert self.spec.command is not None  # one of the two, checked at load time
        command, *args = self.spec.command
        if command in ("python", "python3"):
            command = sys.executable  # the agent's interpreter, with its packages
        if self._errlog is None:
            # open as long as the server object lives: each start of the server writes to it
            errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
            self._errlog = cast(TextIO, errlog)
        self._errlog.seek(0)
        self._errlog.truncate()
        # the SDK starts the server in a session of its own: the wrapper makes it die with
        # this agent, even by SIGKILL (choreo.kafka.children)
        command, *args = lifeline_argv([command, *args], str(self.cwd) if self.cwd else None)
        return stdio_client(
            StdioServerParameters(
                command=command,
                args=args,
                env={**os.environ, **self.spec.env},
                cwd=str(self.cwd) if self.cwd else None,
            ),
            errlog=self._errlog,
        )

    async def _hold(self) -> None:
        """The session's own task: open, list, then wait to be closed or for the server to
        end the connection. Its events are its own session's, whatever opens after it."""
        ready, closing, gone, ended = self._ready, self._closing, self._gone, asyncio.Event()
        session: ClientSession | None = None
        try:
            async with (
                self._transport() as streams,
                watched(streams[0], ended) as read,
                ClientSession(
                    read, streams[1], read_timeout_seconds=timedelta(seconds=self.spec.timeout_s)
                ) as session,
            ):
                await session.initialize()
                listed = await session.list_tools()
                wanted = self.spec.tools
                self.tools = [
                    McpTool(self, t) for t in listed.tools if wanted is None or t.name in wanted
                ]
                self._session = session
                ready.set()
                waiters = [asyncio.ensure_future(e.wait()) for e in (closing, ended)]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:  # the transport may fail under us: leave no waiter behind
                    for waiter in waiters:
                        waiter.cancel()
                if ended.is_set():
                    log.warning("mcp server ended the session", extra={"server": self.spec.mcp})
        except Exception as exc:  # reported by start(), or to each later call
            self._failure = McpUnavailable(self._why(exc))
            log.warning(
                "mcp session ended", extra={"server": self.spec.mcp, "error": str(self._failure)}
            )
        finally:
            if self._session is session:
                self._session = None
            ready.set()
            gone.set()

    async def _connected(self) -> tuple[ClientSession, asyncio.Event]:
        """The live session and the event set when it ends; a lost session is replaced.

        Raises ``ToolFailure`` when the server cannot be reached again.
        """
        async with self._lock:
            if self._session is None:
                await self.aclose()
                try:
                    await self._open()
                except McpUnavailable as exc:
                    raise ToolFailure("error", f"not connected: {exc}") from None
                log.info("mcp server reconnected", extra={"server": self.spec.mcp})
            assert self._session is not None
            return self._session, self._gone

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> str:
        """Call tool ``name``; raises ``ToolFailure`` for an error result, a lost session
        (which the next call replaces) or a server that cannot be reached.

        A server that answers it does not know the session (it restarted since) has not run
        the call, so the call is made once more, on a new session.
        """
        try:
            return await self._call_once(name, arguments, timeout_s)
        except _NotRun:
            return await self._call_once(name, arguments, timeout_s)

    async def _call_once(self, name: str, arguments: dict[str, Any], timeout_s: float) -> str:
        session, gone = await self._connected()
        request = asyncio.ensure_future(
            session.call_tool(name, arguments, read_timeout_seconds=timedelta(seconds=timeout_s))
        )
        watchers: list[asyncio.Future[Any]] = [asyncio.ensure_future(gone.wait())]
        if self.spec.url is not None:
            watchers.append(asyncio.ensure_future(self._heartbeat(session)))
        try:
            await asyncio.wait({request, *watchers}, return_when=asyncio.FIRST_COMPLETED)
            answered = request.done()
        finally:
            for watcher in watchers:
                watcher.cancel()
            if not request.done():
                request.cancel()
        if not answered or request.cancelled():
            raise ToolFailure("error", f"{self.label}: {GONE}")
        exc = request.exception()
        if exc is not None:
            reason = f"{type(exc).__name__}: {exc}"
            if session_gone(exc):
                self._drop(session)
                if isinstance(exc, McpError) and exc.error.code == UNKNOWN_SESSION:
                    raise _NotRun("error", f"{self.label}: {reason}")
                reason = f"{GONE} ({reason})"
            raise ToolFailure("error", f"{self.label}: {reason}")
        result = request.result()
        text = result_text(result)
        if result.isError:
            raise ToolFailure("error", text or f"{name} failed")
        return text

    async def _heartbeat(self, session: ClientSession) -> None:
        """Ping the server while a call is in flight; return once a ping shows the session
        lost. The HTTP transport does not notice a response that will never come (the
        server was killed mid-call); a ping to a server that is gone, or that restarted and
        no longer knows the session, does."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await session.send_ping()
            except Exception as exc:
                if session_gone(exc):
                    self._drop(session)
                    return

    def _drop(self, session: ClientSession) -> None:
        """Give up a lost session (unless a newer one replaced it already)."""
        if self._session is session:
            self._session = None
            self._closing.set()

    async def aclose(self) -> None:
        """End the session; idempotent."""
        self._closing.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), self.spec.timeout_s)
            if not self._task.done():
                self._task.cancel()


class McpTool:
    """One tool of an MCP server, offered to the model under the server's name for it."""

    def __init__(self, server: McpServer, tool: types.Tool) -> None:
        self._server = server
        #: The server's name for the tool, which it is called by; ``name`` is the one the
        #: model sees (choreo.tools.names may rename it).
        self.remote = tool.name
        self.name = tool.name
        self.description = tool.description or tool.name
        self.parameters = tool.inputSchema
        self.server: str | None = server.label
        self.timeout_s: float | None = server.spec.timeout_s

    async def call(self, arguments: dict[str, Any]) -> str:
        return await self._server.call(self.remote, arguments, self._server.spec.timeout_s)
