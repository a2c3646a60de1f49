"""The console's web application: its static page, a JSON API over choreo.client.Client, and
a stream of server-sent events that tells open pages when the mesh wrote something.

Routes (every one behind the token, choreo.console.auth):

    GET  /                                  the page (static/index.html and its files)
    GET  /api/traces?status&agent&text&offset&limit
    GET  /api/traces/{id}                   the timeline, verdicts, result and burn-down
    GET  /api/traces/{id}/state?at&against  state at a version, diff against another
    GET  /api/traces/{id}/budget            each limit, used and left
    GET  /api/escalations                   every escalation, newest state
    POST /api/escalations/{id}/resume       {"guidance": TEXT}
    POST /api/escalations/{id}/close
    GET  /api/dlq                           every dead letter
    POST /api/dlq/{id}/requeue              {"text": FIXED} or {} for the original bytes
    GET  /api/mesh                          agents, routes, joins, replicas and lag
    GET  /api/events                        text/event-stream: ``change`` when topics grow

Errors a user can act on answer 404 (nothing by that id) or 409 (an escalation no longer
open), with the message as JSON ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from choreo.client import Client, EscalationError, TraceNotFound
from choreo.console import views
from choreo.console.auth import TokenGuard
from choreo.console.index import TraceIndex
from choreo.schemas import (
    ControlVerdict,
    Record,
    Snapshot,
    StateConflict,
    TerminalResult,
)
from choreo.spec.mesh import MeshSpec

R = TypeVar("R", bound=Record)
STATIC = Path(__file__).parent / "static"
#: Seconds between two looks at the topics' ends for the event stream.
POLL_S = 1.0
#: Ended traces whose timeline is kept, the most recently opened.
KEPT_TIMELINES = 256
#: Ended traces whose every state version is kept (a long trace's are big).
KEPT_HISTORIES = 16
#: Most traces a page of the traces list holds.
MAX_PAGE = 200


class JSON(Response):
    """A JSON answer encoded by msgspec (records, dataclasses and datetimes as they are)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


def _error(message: str, status: int) -> JSON:
    return JSON({"error": message}, status_code=status)


class Console:
    """The API's handlers over one open ``client`` and the mesh ``spec`` it runs."""

    def __init__(self, client: Client, spec: MeshSpec) -> None:
        self.client = client
        self.spec = spec
        self.index = TraceIndex(client)
        # a finished trace's versions and timeline never change: read once, kept
        self._ended: OrderedDict[str, list[Snapshot]] = OrderedDict()
        self._timelines: OrderedDict[str, bytes] = OrderedDict()

    async def traces(self, request: Request) -> Response:
        query = request.query_params
        try:
            offset = max(0, int(query.get("offset", "0")))
            limit = min(MAX_PAGE, max(1, int(query.get("limit", "50"))))
        except ValueError:
            return _error("offset and limit are whole numbers", 400)
        page = await self.index.page(
            status=query.get("status") or None,
            agent=query.get("agent") or None,
            text=query.get("text") or None,
            offset=offset,
            limit=limit,
        )
        return JSON(
            {
                "total": page.total,
                "offset": page.offset,
                "agents": [a.name for a in self.spec.agents],
                "traces": page.traces,
            }
        )

    async def trace(self, request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        if (kept := self._timelines.get(trace_id)) is not None:
            self._timelines.move_to_end(trace_id)
            return Response(kept, media_type=JSON.media_type)
        client, topics = self.client, self.client.topics
        hops = await client.hops(trace_id)
        results = await client.read(topics.results, trace_id, TerminalResult)
        if not hops and not results:
            raise TraceNotFound(f"no hop or result record of trace {trace_id!r}")
        timeline = views.Timeline(
            trace_id=trace_id,
            hops=hops,
            results=results,
            verdicts=await self._optional(topics.control, trace_id, ControlVerdict),
        )
        body = msgspec.json.encode(views.trace_view(timeline, self.spec))
        if results:  # an ended trace's records never change: drawn once, kept
            self._timelines[trace_id] = body
            while len(self._timelines) > KEPT_TIMELINES:
                self._timelines.popitem(last=False)
        return Response(body, media_type=JSON.media_type)

    async def _optional(self, topic: str, trace_id: str, record_type: type[R]) -> list[R]:
        """The trace's records on a topic a mesh may not have made yet (none then)."""
        try:
            return await self.client.read(topic, trace_id, record_type)
        except TraceNotFound:
            return []

    async def state(self, request: Request) -> Response:
        trace_id = request.path_params["trace_id"]
        versions = await self._versions(trace_id)
        try:
            at = int(request.query_params.get("at") or len(versions))
            against = int(request.query_params.get("against") or at - 1)
        except ValueError:
            return _error("at and against are version numbers", 400)
        if not (1 <= at <= len(versions) and 0 <= against <= len(versions)):
            return _error(f"trace {trace_id} has versions 1..{len(versions)}", 404)
        conflicts = await self._optional(self.client.topics.conflicts, trace_id, StateConflict)
        return JSON(views.state_view(versions, at, against, conflicts))

    async def _versions(self, trace_id: str) -> list[Snapshot]:
        if trace_id in self._ended:
            self._ended.move_to_end(trace_id)
            return self._ended[trace_id]
        versions = await self.client.history(trace_id, self.spec)
        if versions[-1].status != "running":
            self._ended[trace_id] = versions
            while len(self._ended) > KEPT_HISTORIES:
                self._ended.popitem(last=False)
        return versions

    async def budget(self, request: Request) -> Response:
        found = await self.client.budget(request.path_params["trace_id"])
        return JSON(views.budget_view(found))

    async def escalations(self, request: Request) -> Response:
        found = await self.client.escalations()
        return JSON([views.escalation_view(e) for e in reversed(found)])

    async def resume(self, request: Request) -> Response:
        guidance = str((await _body(request)).get("guidance") or "").strip()
        if not guidance:
            return _error("resuming needs guidance for the continuation", 400)
        updated = await self.client.resume(request.path_params["escalation_id"], guidance)
        return JSON(views.escalation_view(updated))

    async def close(self, request: Request) -> Response:
        updated = await self.client.close_escalation(request.path_params["escalation_id"])
        return JSON(views.escalation_view(updated))

    async def dlq(self, request: Request) -> Response:
        found = await self.client.dlq()
        return JSON([views.letter_view(e) for e in reversed(found)])

    async def requeue(self, request: Request) -> Response:
        text = (await _body(request)).get("text")
        value = text.encode() if isinstance(text, str) else None
        sent = await self.client.requeue(request.path_params["letter_id"], value)
        return JSON({"topic": sent.topic, "partition": sent.partition, "offset": sent.offset})

    async def mesh(self, request: Request) -> Response:
        groups = await self.client.groups(self.spec)
        return JSON(views.mesh_view(self.spec, groups))

    async def events(self, request: Request) -> Response:
        return StreamingResponse(
            self._changes(request),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def _changes(self, request: Request) -> AsyncIterator[str]:
        """``change`` events naming the topics that grew, every POLL_S at most; a comment
        line in between keeps proxies from closing an idle stream."""
        seen = await self.client.positions()
        yield ": watching\n\n"
        while not await request.is_disconnected():
            await asyncio.sleep(POLL_S)
            now = await self.client.positions()
            grew = sorted(name for name, end in now.items() if end != seen.get(name))
            seen = now
            if grew:
                await self.index.refresh()
                kinds = [name.rsplit(".", 1)[-1] for name in grew]
                yield f"event: change\ndata: {json.dumps(kinds)}\n\n"
            else:
                yield ": idle\n\n"


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def create_app(client: Client, spec: MeshSpec, token: str) -> TokenGuard:
    """The console over ``client`` (open) and the mesh ``spec``, behind ``token``."""
    console = Console(client, spec)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(str(exc), 404)

    async def conflict(request: Request, exc: Exception) -> Response:
        status = 404 if "no escalation" in str(exc) else 409
        return _error(str(exc), status)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await console.index.close()

    app = Starlette(
        routes=[
            Route("/api/traces", console.traces),
            Route("/api/traces/{trace_id}", console.trace),
            Route("/api/traces/{trace_id}/state", console.state),
            Route("/api/traces/{trace_id}/budget", console.budget),
            Route("/api/escalations", console.escalations),
            Route("/api/escalations/{escalation_id}/resume", console.resume, methods=["POST"]),
            Route("/api/escalations/{escalation_id}/close", console.close, methods=["POST"]),
            Route("/api/dlq", console.dlq),
            Route("/api/dlq/{letter_id}/requeue", console.requeue, methods=["POST"]),
            Route("/api/mesh", console.mesh),
            Route("/api/events", console.events),
            Mount("/", StaticFiles(directory=STATIC, html=True)),
        ],
        exception_handlers={
            TraceNotFound: not_found,
            EscalationError: conflict,
            LookupError: not_found,
        },
        lifespan=lifespan,
    )
    return TokenGuard(app, token)
