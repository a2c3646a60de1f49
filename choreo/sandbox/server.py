"""HTTP/JSON for the sandbox over a Unix socket (default) or loopback TCP, on asyncio streams.

A Unix socket lets the sandbox's container run with no network at all, sharing one volume.
The protocol is deliberately tiny: one request per connection, ``Connection: close``.

    GET  /healthz  -> 200 {"isolation": true, ...} | 503 {"isolation": false, "problem": ...}
    POST /run      -> 200 SandboxResult | 503 SandboxResult(status="refused") | 400 {"error"}
    GET  /metrics  -> Prometheus text
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from functools import partial
from http import HTTPStatus
from pathlib import Path

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from choreo.kafka.runner import run_service
from choreo.kafka.service import Service
from choreo.observe.metrics import OWN
from choreo.observe.settings import get_settings
from choreo.sandbox.runner import become_subreaper
from choreo.sandbox.service import SandboxService
from choreo.tools.sandbox.limits import SandboxLimits
from choreo.tools.sandbox.protocol import RunRequest

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 30.0
MAX_HEADER_LINES = 64
JSON = "application/json"


class HttpError(Exception):
    """A request the API refuses with ``status``; it becomes that response, never reaching
    a caller as an exception (so no ``ChoreoError``)."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


Response = tuple[HTTPStatus, bytes, str]


def serve(
    socket_path: Path | None, host: str | None, port: int | None, limits: SandboxLimits
) -> None:
    """Serve as this process until SIGTERM/SIGINT (choreo.kafka.runner); print ``listening on
    ...`` once per listener when ready.

    Metrics are on ``GET /metrics`` of the API, and also on ``CHOREO_METRICS_PORT`` when set
    (a container with no network can only be scraped through its socket).
    """
    if socket_path is None and port is None:
        raise ValueError("give a socket path, a port, or both")
    become_subreaper()  # the process adopts whatever a run leaves behind, and reaps it
    run_service(
        "sandbox",
        get_settings(),
        lambda: SandboxServer(socket_path, host or "127.0.0.1", port, limits),
    )


class SandboxServer(Service):
    """The sandbox's API on a Unix socket and/or loopback TCP, as a service
    (choreo.kafka.service.Service): entering checks isolation and opens the listeners (their
    addresses in ``urls``: ``unix:PATH``, ``http://HOST:PORT``), leaving closes them and
    removes the socket; ``run(stop)``, the process's part, announces each address on stdout
    and serves until ``stop`` is set. ``url`` is the HTTP address, once entered."""

    def __init__(
        self, socket_path: Path | None, host: str, port: int | None, limits: SandboxLimits
    ) -> None:
        self.socket_path = socket_path
        self.host = host
        self.port = port
        self.limits = limits
        self.urls: list[str] = []
        self.url = ""

    async def _acquire(self, stack: contextlib.AsyncExitStack) -> None:
        service = SandboxService(self.limits)
        await service.check()  # logs any problem; runs are then refused, never unconfined
        handler = partial(_handle, service)
        if self.socket_path is not None:
            path = self.socket_path
            _clear_stale_socket(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            stack.callback(_unlink, path)  # once the server on it is closed
            await _listening(stack, await asyncio.start_unix_server(handler, path=str(path)))
            os.chmod(path, self.limits.socket_mode)
            self.urls.append(f"unix:{path}")
        if self.port is not None:
            server = await _listening(
                stack, await asyncio.start_server(handler, self.host, self.port)
            )
            bound = server.sockets[0].getsockname()[1]
            self.url = f"http://{self.host}:{bound}"
            self.urls.append(self.url)

    async def run(self, stop: asyncio.Event) -> None:
        for url in self.urls:  # what the starter of the process reads
            print(f"listening on {url}", flush=True)
        await stop.wait()


async def _listening(stack: contextlib.AsyncExitStack, server: asyncio.Server) -> asyncio.Server:
    """``server``, to be closed when ``stack`` unwinds."""

    async def close() -> None:
        server.close()
        await server.wait_closed()

    stack.push_async_callback(close)
    return server


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _clear_stale_socket(path: Path) -> None:
    """Remove a socket left by a dead server; refuse to steal a live one or clobber a file."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()
            return
    raise FileExistsError(f"{path} is in use by a running server")


async def _handle(
    service: SandboxService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                method, path, body = await _read_request(reader, service.limits.max_request_bytes)
            status, payload, content_type = await _route(service, method, path, body)
        except HttpError as exc:
            status, payload, content_type = exc.status, _error(str(exc)), JSON
        except TimeoutError:
            status, payload, content_type = HTTPStatus.REQUEST_TIMEOUT, _error("too slow"), JSON
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _read_request(reader: asyncio.StreamReader, max_body: int) -> tuple[str, str, bytes]:
    try:
        method, target, _version = (await reader.readline()).decode("latin-1").split()
    except ValueError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request line") from exc
    length = 0
    for _ in range(MAX_HEADER_LINES):
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            try:
                length = int(value)
            except ValueError as exc:
                raise HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from exc
    else:
        raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header lines")
    if not 0 <= length <= max_body:
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {max_body} bytes")
    return method, target.split("?", 1)[0], await reader.readexactly(length)


async def _route(service: SandboxService, method: str, path: str, body: bytes) -> Response:
    routes: dict[tuple[str, str], Callable[[SandboxService, bytes], Awaitable[Response]]] = {
        ("GET", "/healthz"): _healthz,
        ("POST", "/run"): _run,
        ("GET", "/metrics"): _metrics,
    }
    handler = routes.get((method, path))
    if handler is None:
        known = any(path == route for _method, route in routes)
        raise HttpError(
            HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND,
            f"{method} {path} is not served",
        )
    return await handler(service, body)


async def _healthz(service: SandboxService, _body: bytes) -> Response:
    health = await service.health()
    status = HTTPStatus.OK if health["isolation"] else HTTPStatus.SERVICE_UNAVAILABLE
    return status, msgspec.json.encode(health), JSON


async def _run(service: SandboxService, body: bytes) -> Response:
    try:
        request = msgspec.json.decode(body, type=RunRequest)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise HttpError(HTTPStatus.BAD_REQUEST, f"invalid run request: {exc}") from exc
    if problem := service.validate(request):
        raise HttpError(HTTPStatus.BAD_REQUEST, problem)
    result = await service.run(request)
    status = HTTPStatus.SERVICE_UNAVAILABLE if result.status == "refused" else HTTPStatus.OK
    return status, msgspec.json.encode(result), JSON


async def _metrics(_service: SandboxService, _body: bytes) -> Response:
    return HTTPStatus.OK, generate_latest(OWN), CONTENT_TYPE_LATEST  # its own series only


def _error(message: str) -> bytes:
    return msgspec.json.encode({"error": message})
