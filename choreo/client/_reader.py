"""Reading a trace's records, or a whole topic, with one group-less consumer.

The trace id is the key on every topic, so everything about a trace sits on one partition of
each topic: a trace read fetches that partition only, from its beginning to where it ends now.
Reads take turns on the one consumer (it is assigned to the partitions of one read at a time),
and its partitions are paused between reads, so an idle client fetches nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from choreo.client.errors import TraceNotFound
from choreo.kafka.clients import partition_for, read_to_end
from choreo.schemas import DecodeError, Record, decode
from choreo.schemas.deltas import of_trace

R = TypeVar("R", bound=Record)
#: How long a read waits for a transaction being decided at a partition's end (seconds): a
#: keeper's transaction that wrote a trace's result also wrote its last hop and state, and its
#: commit reaches their partitions a moment apart (choreo.kafka.clients.read_to_end).
SETTLE_S = 2.0
log = logging.getLogger(__name__)


def decoded(record: ConsumerRecord[bytes, bytes], record_type: type[R]) -> R | None:
    """The record as ``record_type``, or None (logged, with where it is) if it is not one.

    A reader shows what it can: one record someone else wrote badly on a shared topic must
    not make a trace unreadable.
    """
    if not record.value:
        return None
    try:
        return decode(record.value, record_type)
    except DecodeError as exc:
        log.warning(
            "skipped a record that does not decode",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": str(exc),
            },
        )
        return None


class Reader:
    """Reads records to the end of their partitions with ``consumer`` (started, no group), one
    read at a time. Partition counts are remembered once seen: a topic's count does not change
    under a running mesh, and asking the broker again for every read costs a round trip."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._turn = asyncio.Lock()
        self._counts: dict[str, int] = {}

    async def topics(self) -> set[str]:
        """Every topic on the broker now."""
        async with self._turn:
            found: set[str] = await self._consumer.topics()
            return found

    async def _count(self, topic: str) -> int:
        """``topic``'s partition count; 0 while it does not exist (asked again next time)."""
        if topic not in self._counts:
            await self._consumer.topics()  # refreshes the metadata: a new topic shows
            count = len(self._consumer.partitions_for_topic(topic) or ())
            if count == 0:
                return 0
            self._counts[topic] = count
        return self._counts[topic]

    async def _read(self, parts: list[TopicPartition]) -> list[ConsumerRecord[bytes, bytes]]:
        try:
            return [r async for r in read_to_end(self._consumer, parts, settle_s=SETTLE_S)]
        finally:
            # paused, not unassigned: no fetches between reads either way, but an unassigned
            # aiokafka fetcher that is stopped while it drops its in-flight fetches swallows
            # the cancel and then waits forever for an assignment (the client hangs on close)
            self._consumer.pause(*parts)

    async def trace(
        self, topic: str, trace_id: str, *, missing_ok: bool = False, deltas: bool = False
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Every record keyed ``trace_id`` on ``topic``, in log order; with ``deltas``, the
        state log's deltas of the trace too (keyed ``<trace id>/<version>``,
        choreo.schemas.deltas) and their tombstones.

        Raises:
            TraceNotFound: the topic does not exist (unless ``missing_ok``: then no records).
        """
        async with self._turn:
            count = await self._count(topic)
            if count == 0:
                if missing_ok:
                    return []
                raise TraceNotFound(f"topic {topic!r} does not exist")
            key = trace_id.encode()
            part = TopicPartition(topic, partition_for(trace_id, count))
            records = await self._read([part])
            if deltas:
                return [r for r in records if of_trace(r.key, trace_id)]
            return [r for r in records if r.key == key]

    async def typed(
        self, topic: str, trace_id: str, record_type: type[R], *, missing_ok: bool = False
    ) -> list[R]:
        """The trace's records on ``topic`` that decode as ``record_type``, in log order; the
        others are skipped and logged (``decoded``). Raises as ``trace`` does."""
        records = await self.trace(topic, trace_id, missing_ok=missing_ok)
        return [r for r in (decoded(record, record_type) for record in records) if r is not None]

    async def ends(self, *topics: str) -> dict[TopicPartition, int]:
        """Each partition of ``topics`` and its end offset now, in one request; none of a
        topic that does not exist."""
        async with self._turn:
            parts = [
                TopicPartition(topic, p)
                for topic in topics
                for p in range(await self._count(topic))
            ]
            if not parts:
                return {}
            found: dict[TopicPartition, int] = await self._consumer.end_offsets(parts)
            return found

    async def topic(self, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
        """Every record of ``topic``, partition by partition; none while it does not exist."""
        async with self._turn:
            count = await self._count(topic)
            if count == 0:
                return []
            return await self._read([TopicPartition(topic, p) for p in range(count)])
