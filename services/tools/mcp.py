"""MCP servers' tools, through the official ``mcp`` SDK (v1: ``ClientSession``).

A server is started over stdio (a child process of the agent) or reached over streamable
HTTP. Its session lives in a task of its own for the life of the agent: the SDK's transports
are anyio task groups, which must be entered and left by the same task, while calls come
from every step's task. The tools are listed once, when the session opens; a result the
server flags ``isError`` is an error message for the model, like a Python tool's exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from choreo.services.runtime.spec import McpServerSpec
from choreo.services.tools.base import ToolFailure

log = logging.getLogger(__name__)


class McpUnavailable(RuntimeError):
    """The server could not be started, reached or listed; the message says which."""


def result_text(result: types.CallToolResult) -> str:
    """A call's result as text: its text blocks, else its structured content as JSON."""
    parts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    parts += [f"[{block.type} content]" for block in result.content
              if not isinstance(block, types.TextContent)]
    if not parts and result.structuredContent is not None:
        return json.dumps(result.structuredContent, sort_keys=True)
    return "\n".join(parts)


class McpServer:
    """One MCP server of an agent: ``start`` opens the session and lists the tools, ``call``
    calls one, ``aclose`` ends the session (and stops a stdio server)."""

    def __init__(self, spec: McpServerSpec, cwd: Path | None = None) -> None:
        self.spec = spec
        self.cwd = cwd
        self.tools: list[McpTool] = []
        self._session: ClientSession | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"mcp:{self.spec.mcp}"

    async def start(self) -> list[McpTool]:
        """Open the session and list the server's tools (kept to ``spec.tools`` if given).

        Raises ``McpUnavailable`` when the server cannot be started, reached or listed
        within the spec's ``timeout_s``.
        """
        self._ready, self._closing, self._failure = asyncio.Event(), asyncio.Event(), None
        self._task = asyncio.create_task(self._hold(), name=self.label)
        try:
            await asyncio.wait_for(self._ready.wait(), self.spec.timeout_s)
        except TimeoutError:
            await self.aclose()
            raise McpUnavailable(f"{self.label}: no session within {self.spec.timeout_s:g}s"
                                 ) from None
        if self._failure is not None:
            await self.aclose()
            raise McpUnavailable(f"{self.label}: {type(self._failure).__name__}: "
                                 f"{self._failure}") from self._failure
        log.info("mcp server listed", extra={"server": self.spec.mcp,
                                             "tools": [t.name for t in self.tools]})
        return self.tools

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.spec.url is not None:
            return streamable_http_client(self.spec.url)
        assert self.spec.command is not None  # one of the two, checked at load time
        command, *args = self.spec.command
        if command in ("python", "python3"):
            command = sys.executable  # the agent's interpreter, with its packages
        return stdio_client(StdioServerParameters(
            command=command, args=args, env={**os.environ, **self.spec.env},
            cwd=str(self.cwd) if self.cwd else None))

    async def _hold(self) -> None:
        """The session's own task: open, list, then wait to be closed."""
        try:
            async with self._transport() as streams, ClientSession(
                    streams[0], streams[1],
                    read_timeout_seconds=timedelta(seconds=self.spec.timeout_s)) as session:
                await session.initialize()
                listed = await session.list_tools()
                wanted = self.spec.tools
                self.tools = [McpTool(self, t) for t in listed.tools
                              if wanted is None or t.name in wanted]
                self._session = session
                self._ready.set()
                await self._closing.wait()
        except Exception as exc:  # reported by start(), or to each later call
            self._failure = exc
            log.warning("mcp session ended", extra={"server": self.spec.mcp,
                                                    "error": f"{type(exc).__name__}: {exc}"})
        finally:
            self._session = None
            self._ready.set()

    async def call(self, name: str, arguments: dict[str, Any], timeout_s: float) -> str:
        """Call tool ``name``; raises ``ToolFailure`` for an error result or a lost session."""
        session = self._session
        if session is None:
            raise ToolFailure("error", f"{self.label} is not connected")
        try:
            result = await session.call_tool(name, arguments,
                                             read_timeout_seconds=timedelta(seconds=timeout_s))
        except Exception as exc:
            raise ToolFailure("error", f"{self.label}: {type(exc).__name__}: {exc}") from None
        text = result_text(result)
        if result.isError:
            raise ToolFailure("error", text or f"{name} failed")
        return text

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
        self.name = tool.name
        self.description = tool.description or tool.name
        self.parameters = tool.inputSchema
        self.server: str | None = server.label
        self.timeout_s: float | None = server.spec.timeout_s

    async def call(self, arguments: dict[str, Any]) -> str:
        return await self._server.call(self.name, arguments, self._server.spec.timeout_s)
