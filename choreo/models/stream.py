"""Reading a streamed answer: server-sent events, with a wait bound for the first chunk and
another between chunks.

Long answers (a reasoning model thinking for minutes) cannot be bounded by one total per
attempt, and proxies drop connections that stay silent: so a streamed attempt is bounded by
``first_token_timeout_s`` until its first chunk and by ``idle_timeout_s`` between chunks, and
as every call by the trace's deadline. Event framing follows the WHATWG "Server-sent events"
specification (``data:`` lines, a blank line ends an event, ``:`` starts a comment).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from choreo.models.providers import Assembler, Reply


class StreamBroken(Exception):
    """A stream that began but did not end as an answer: ``reason`` is ``stream_cut`` (the
    connection closed or the server sent an error) or ``stream_stalled`` (silent past the
    idle bound); ``payload`` is what arrived, for the usage estimate."""

    def __init__(self, reason: str, detail: str, payload: dict[str, Any]) -> None:
        super().__init__(detail)
        self.reason = reason
        self.payload = payload


class TooLarge(Exception):
    """The answer's body is over the client's size limit."""


class StreamReader:
    """Reads one streamed answer into ``assembler``. ``timer`` bounds the attempt: it is
    moved ``idle_s`` past each chunk, so the caller's ``asyncio.timeout`` (set to the first
    chunk's bound) fires on a silence; ``chunks`` tells the caller which bound it was."""

    def __init__(
        self, assembler: Assembler, timer: asyncio.Timeout, idle_s: float, max_bytes: int
    ) -> None:
        self.assembler = assembler
        self.chunks = 0
        self._timer = timer
        self._idle_s = idle_s
        self._max_bytes = max_bytes

    async def read(self, response: Reply) -> dict[str, Any]:
        """The whole answer as the provider's non-streamed payload; raises ``StreamBroken``
        or ``TooLarge``."""
        loop = asyncio.get_running_loop()
        buffer, size = b"", 0
        try:
            async for chunk in response.aiter_bytes():
                self.chunks += 1
                self._timer.reschedule(loop.time() + self._idle_s)
                size += len(chunk)
                if size > self._max_bytes:
                    raise TooLarge(f"the answer is over {self._max_bytes} bytes")
                buffer = (buffer + chunk).replace(b"\r\n", b"\n")
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    self._feed(event)
        except httpx.TimeoutException:
            raise self.broken("stream_stalled", "the stream went silent") from None
        except httpx.TransportError as exc:  # cut mid-way: the server or a proxy hung up
            raise self.broken("stream_cut", f"{type(exc).__name__}: {exc}") from None
        self._feed(buffer)
        if not self.assembler.complete():
            raise self.broken("stream_cut", "the stream ended before the answer did")
        return self.assembler.payload()

    def _feed(self, event: bytes) -> None:
        lines = event.decode("utf-8", "replace").split("\n")
        data = "\n".join(
            line.removeprefix("data:").removeprefix(" ")
            for line in lines
            if line.startswith("data:")
        )
        if not data:
            return
        try:
            self.assembler.feed(data)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self.broken("stream_cut", f"{type(exc).__name__}: {exc}") from None

    def broken(self, reason: str, detail: str) -> StreamBroken:
        return StreamBroken(reason, detail, self.assembler.payload())
