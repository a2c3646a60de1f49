"""Kafka I/O shared by every service: tuned clients, the dead-letter path, reading to the end.

Tuning follows docs/ARCHITECTURE.md: short fetch waits (a waiting fetch is not woken by new
data on every broker), manual commits after the produce is acknowledged, and ``highwater``
rather than ``end_offsets`` to know where a partition ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord

from choreo.schemas import DeadLetter, encode
from choreo.services.runtime import metrics
from choreo.services.runtime.settings import Settings
from choreo.services.runtime.telemetry import Headers, inject

log = logging.getLogger(__name__)


def make_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """A producer that waits for every replica: a record is only 'sent' once it is durable."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        linger_ms=2,
        max_batch_size=256 * 1024,
        enable_idempotence=False,  # at-least-once by design; ids make applies idempotent
    )


def make_consumer(
    bootstrap: str,
    settings: Settings,
    *,
    group_id: str | None,
    client_id: str,
    topics: Sequence[str] = (),
    max_records: int | None = None,
) -> AIOKafkaConsumer:
    """A consumer with manual commits: offsets move only after the work is produced."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_records=max_records,
    )


async def acked(sends: Iterable[Awaitable[Awaitable[Any]]]) -> None:
    """Queue every send, then wait until the broker has acknowledged them all.

    ``producer.send`` returns once a record is queued, with a future for its ack; queueing
    all of them before waiting lets the producer batch them.
    """
    futures = [await send for send in sends]
    await asyncio.gather(*futures)


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (murmur2, as in Java)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def key_of(record: ConsumerRecord[bytes, bytes]) -> str | None:
    return record.key.decode("utf-8", "replace") if record.key is not None else None


def headers_of(record: ConsumerRecord[bytes, bytes]) -> Headers:
    """A consumed record's headers as the list a producer accepts."""
    return list(record.headers or ())


def forward_headers(record: ConsumerRecord[bytes, bytes]) -> Headers:
    """Headers for a record produced because of ``record``: its headers, with the current
    span's trace context in place of the one it carried (see services.runtime.telemetry)."""
    return inject(headers_of(record))


class DeadLetters:
    """Sends records a consumer cannot accept to the dead-letter topic, bytes intact."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, consumer: str) -> None:
        self._producer = producer
        self._topic = topic
        self._consumer = consumer

    async def send(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Publish and wait for the ack, so the caller may commit past the record."""
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key_of(record),
            reason=reason,
            consumer=self._consumer,
            original=record.value or b"",
        )
        await self._producer.send_and_wait(
            self._topic, encode(letter), key=record.key, headers=forward_headers(record)
        )
        metrics.DEAD_LETTERS.labels(consumer=self._consumer, topic=record.topic).inc()
        log.warning(
            "dead-lettered record",
            extra={"trace_id": key_of(record), "topic": record.topic,
                   "offset": record.offset, "reason": reason},
        )


async def read_to_end(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Yield every record of ``partitions``, from the beginning to their first-seen high watermark.

    ``consumer`` must have no group (it is assigned here). The high watermark comes from fetch
    responses, which every broker reports correctly, unlike ``end_offsets`` on some.
    """
    parts = list(partitions)
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    pending = set(parts)
    targets: dict[TopicPartition, int] = {}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=200)
        for tp, records in batch.items():
            for record in records:
                if tp not in targets or record.offset < targets[tp]:
                    yield record
        for tp in list(pending):
            high = consumer.highwater(tp)
            if high is None:
                continue
            targets.setdefault(tp, high)
            if await consumer.position(tp) >= targets[tp]:
                pending.discard(tp)


async def read_topic(
    bootstrap: str, settings: Settings, topic: str, partitions: Iterable[int] | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` (or of some of its partitions), read once to the end."""
    consumer = make_consumer(bootstrap, settings, group_id=None, client_id="choreo-reader")
    await consumer.start()
    try:
        if partitions is None:
            await consumer.topics()  # refreshes metadata, so a fresh topic's partitions show
            numbers = sorted(consumer.partitions_for_topic(topic) or ())
        else:
            numbers = list(partitions)
        return [r async for r in read_to_end(consumer, [TopicPartition(topic, p) for p in numbers])]
    finally:
        await consumer.stop()
