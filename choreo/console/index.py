"""The traces page's list, kept between requests and rebuilt when the mesh writes.

Listing every trace reads the state and results topics whole (choreo.client.Client.traces),
which takes a while with thousands of traces on the broker; pages and filters are cheap. So
the list is kept, and rebuilt in the background once those topics have grown: a request
waits only for the very first build, later ones are answered from the list at hand (at most
one rebuild behind). Stale-while-revalidate, as HTTP caches do it (RFC 5861).
"""

from __future__ import annotations

import asyncio
import contextlib

from choreo.client import Client, TracePage, TraceSummary


class TraceIndex:
    """Every trace's summary, from ``client``; ``page`` filters and pages it."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._traces: list[TraceSummary] | None = None
        self._seen: tuple[int, int] | None = None
        self._building: asyncio.Task[None] | None = None

    async def page(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        text: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> TracePage:
        """A page of the list (filtered as choreo.client.TracePage.of does), after a rebuild
        is started if the mesh wrote since the last one."""
        await self.refresh()
        if self._traces is None and self._building is not None:
            await asyncio.shield(self._building)  # the first build: nothing to show before
        return TracePage.of(
            self._traces or [], status=status, agent=agent, text=text, offset=offset, limit=limit
        )

    async def refresh(self) -> None:
        """Start a rebuild if the state or results topic grew and none runs."""
        if self._building is not None and not self._building.done():
            return
        positions = await self._client.positions()
        now = (positions[self._client.topics.state], positions[self._client.topics.results])
        if now != self._seen:
            self._building = asyncio.create_task(self._build(now), name="console-index")

    async def _build(self, seen: tuple[int, int]) -> None:
        found = await self._client.traces(limit=None)
        self._traces, self._seen = found.traces, seen

    async def close(self) -> None:
        """Stop a rebuild still running."""
        if self._building is not None:
            self._building.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._building
