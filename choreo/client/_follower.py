"""Waiting for terminal records: one consumer follows the results topic for every waiter.

Started, it is positioned at the topic's end (or, for a topic that does not exist yet, at its
beginning once it does), so it sees every result written from then on; a result written before
is the waiter's to look up once (choreo.client.Client.wait). Many waits cost one consumer, not
one each, and a result reaches its waiter one fetch after it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from choreo.client._reader import decoded
from choreo.kafka.clients import partitions_of
from choreo.schemas import TerminalResult

#: How long one metadata poll waits for the results topic to appear, in seconds.
_TOPIC_POLL_S = 5.0
#: The longest a poll of the results topic waits for records, in milliseconds.
_POLL_MS = 500


class ResultFollower:
    """Resolves ``watch`` futures from the results topic, read by ``consumer`` (no group, not
    started: ``start`` starts it, ``stop`` stops it).

    A record that does not decode is skipped (logged by ``decoded``). If following fails (the
    consumer raised), every waiter gets the error, and so does every later ``watch``.
    """

    def __init__(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        self._consumer = consumer
        self._topic = topic
        self._waiting: defaultdict[str, set[asyncio.Future[TerminalResult]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    async def start(self) -> None:
        """Start following; when it returns, every result written from now on will be seen."""
        await self._consumer.start()
        numbers = await partitions_of(self._consumer, self._topic, 0)
        parts = [TopicPartition(self._topic, n) for n in numbers]
        if parts:
            self._consumer.assign(parts)
            await self._consumer.seek_to_end(*parts)
            for part in parts:  # the end is looked up now, not at the first fetch
                await self._consumer.position(part)
        self._task = asyncio.create_task(self._follow(bool(parts)), name="choreo-results")

    def watch(self, trace_id: str) -> asyncio.Future[TerminalResult]:
        """A future for the trace's terminal record; ``forget`` it when done waiting."""
        if self._failed is not None:
            raise self._failed
        future: asyncio.Future[TerminalResult] = asyncio.get_running_loop().create_future()
        self._waiting[trace_id].add(future)
        return future

    def forget(self, trace_id: str, future: asyncio.Future[TerminalResult]) -> None:
        waiters = self._waiting.get(trace_id)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiting[trace_id]

    async def _follow(self, assigned: bool) -> None:
        try:
            if not assigned:  # everything on a topic made after we started is news
                numbers: list[int] = []
                while not numbers:
                    numbers = await partitions_of(self._consumer, self._topic, _TOPIC_POLL_S)
                parts = [TopicPartition(self._topic, n) for n in numbers]
                self._consumer.assign(parts)
                await self._consumer.seek_to_beginning(*parts)
            while True:
                batch = await self._consumer.getmany(timeout_ms=_POLL_MS)
                for records in batch.values():
                    for record in records:
                        self._deliver(record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every waiter hears of it, none waits out its timeout
            self._failed = exc
            self._fail(exc)

    def _deliver(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.key is None:
            return
        waiters = self._waiting.get(record.key.decode("utf-8", "replace"))
        if not waiters:
            return
        result = decoded(record, TerminalResult)
        if result is None:
            return
        for future in waiters:
            if not future.done():
                future.set_result(result)

    async def stop(self) -> None:
        """Stop following and stop the consumer; idempotent, and safe after a failed start.
        Every waiter still waiting gets a ``RuntimeError``: nothing will resolve it now."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail(RuntimeError("the client is closed"))
        await self._consumer.stop()

    def _fail(self, error: BaseException) -> None:
        for waiters in self._waiting.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(error)
