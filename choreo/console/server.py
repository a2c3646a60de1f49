"""Serving the console: a socket bound where asked, uvicorn on it, one client of the mesh.

The socket is bound before the server starts, so the address (with a port the OS chose when
asked for port 0) is known, and printed, before the first request can come.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import quote

import uvicorn

from choreo.client import Client
from choreo.console.app import create_app
from choreo.spec.mesh import MeshSpec

#: Where the console listens unless told otherwise: this machine only.
LOOPBACK = "127.0.0.1"


def bind(host: str = LOOPBACK, port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port).

    Raises:
        OSError: the address is taken or not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address(sock: socket.socket, token: str) -> str:
    """The URL to open: the socket's address with the token."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={quote(token)}"


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it has started."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


class ConsoleServer:
    """uvicorn serving the console of ``client``'s mesh (``spec``) on ``sock``; ``serve`` runs
    until ``stop`` (or SIGINT/SIGTERM when run in the main thread)."""

    def __init__(self, client: Client, spec: MeshSpec, token: str, sock: socket.socket) -> None:
        config = uvicorn.Config(
            create_app(client, spec, token),
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._sock = sock

    async def serve(self) -> None:
        """Serve until stopped."""
        await self._server.serve(sockets=[self._sock])

    async def started(self, serving: asyncio.Task[None]) -> None:
        """Return once the server answers requests; raise why if ``serving`` (the task
        running ``serve``) ended before."""
        ready = asyncio.create_task(self._server.ready.wait())
        await asyncio.wait([ready, serving], return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            await serving  # raises why it did not start
            raise RuntimeError("the console's server stopped before it started")

    def stop(self) -> None:
        """Ask the server to stop: open event streams end, then ``serve`` returns."""
        self._server.should_exit = True
