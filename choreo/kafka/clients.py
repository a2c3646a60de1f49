"""Kafka I/O shared by every service: tuned clients, the dead-letter path, reading to the end.

Tuning follows docs/ARCHITECTURE.md and depends on the broker kind (``Settings.broker_kind``,
else asked of the broker): on Apache Kafka, long-poll fetches (new data wakes them) and
``end_offsets`` to know where a partition ends; on the embedded broker, whose waiting fetches
are not woken and whose ``end_offsets`` is wrong after batched writes, short fetch waits that
back off while idle, and the ``highwater`` of fetch responses. Commits are manual, after the
produce is acknowledged, everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord

from choreo.kafka.broker import BrokerKind, broker_kind
from choreo.kafka.errors import BrokerOutage
from choreo.kafka.limits import RecordLimit
from choreo.kafka.security import KafkaSecurity, current, security_of
from choreo.observe import metrics
from choreo.observe.settings import Settings
from choreo.observe.telemetry import Headers, inject
from choreo.schemas import DeadLetter

log = logging.getLogger(__name__)


#: A transactional producer's retry backoff, ms (see make_producer).
TRANSACTION_RETRY_MS = 10


def make_producer(
    bootstrap: str,
    client_id: str,
    *,
    transactional_id: str | None = None,
    transaction_timeout_ms: int = 60_000,
    security: KafkaSecurity | None = None,
    idempotent: bool = False,
) -> AIOKafkaProducer:
    """A producer that waits for every replica: a record is only 'sent' once it is durable.

    Without ``transactional_id`` it is at-least-once by design (ids make applies
    idempotent); with one, an idempotent producer for transactions under that id
    (choreo.kafka.transactions), whose open transaction the broker aborts after
    ``transaction_timeout_ms`` if nobody ends it. ``security`` (else this process's,
    choreo.kafka.security.current) says how it authenticates. ``idempotent`` (Apache Kafka
    only: the embedded broker has no producer ids) makes the broker drop a retried send it
    already has, as after a partition leader's loss, when the first attempt landed but its
    answer did not.
    """
    # A transaction started while the broker still writes the last one's markers is refused
    # as "concurrent" and retried after the backoff: 100 ms by default, most of a step.
    transactional = (
        {
            "transactional_id": transactional_id,
            "enable_idempotence": True,
            "transaction_timeout_ms": transaction_timeout_ms,
            "retry_backoff_ms": TRANSACTION_RETRY_MS,
        }
        if transactional_id
        else {"enable_idempotence": idempotent}
    )
    # No linger: every send is a step's output that someone waits for; records queued
    # together (a batch's outputs) still go in one request.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        linger_ms=0,
        max_batch_size=256 * 1024,
        **transactional,
        **(security or current()).client_options(),
    )


#: Apache Kafka's own fetch wait: a waiting fetch returns as soon as data arrives.
KAFKA_FETCH_WAIT_MS = 500


def kind_of(bootstrap: str, settings: Settings) -> BrokerKind:
    """The broker kind whose tuning applies: the setting, or what the broker answers."""
    if settings.broker_kind != "auto":
        return settings.broker_kind
    return broker_kind(bootstrap, security_of(settings).ssl_context())


@dataclass
class FetchBackoff:
    """The fetch wait of a consumer on a broker whose waiting fetches new data does not wake.

    While records flow the wait stays ``short_ms`` (latency follows it); after ``quiet_s``
    seconds without a record it doubles on every empty poll up to ``idle_ms``, so an idle
    consumer sends a few fetches a second instead of a hundred; the first record back
    restores ``short_ms``. Times in milliseconds (``quiet_s`` in seconds).
    """

    short_ms: int
    idle_ms: int
    quiet_s: float = 1.0
    wait_ms: int = 0
    _last_record: float = 0.0

    def __post_init__(self) -> None:
        self.wait_ms = self.short_ms
        self._last_record = time.monotonic()

    def after_poll(self, got_records: bool, now: float | None = None) -> int:
        """The wait for the next fetches, after a poll that did or did not return records."""
        now = time.monotonic() if now is None else now
        if got_records:
            self._last_record, self.wait_ms = now, self.short_ms
        elif now - self._last_record >= self.quiet_s:
            self.wait_ms = min(self.idle_ms, self.wait_ms * 2)
        return self.wait_ms


class _Consumer(AIOKafkaConsumer):
    """An aiokafka consumer whose ``partitions_for_topic`` also knows the topics the last
    ``topics()`` call saw, not only those subscribed or assigned: a client's metadata holds
    every topic on the embedded broker but none on Apache Kafka until it asks for them."""

    _seen: ClusterMetadata | None = None

    async def topics(self) -> set[str]:
        """Every topic on the broker, from metadata asked for now.

        A refresh no broker answers is asked again every retry back-off, for up to the
        request timeout (40 s by default): aiokafka gives up after one round, and a broker
        just resumed or restarted refuses connections or lists no brokers for a moment.

        Raises:
            KafkaConnectionError: no broker answered within the request timeout.
        """
        client = self._client
        within_s = client._request_timeout_ms / 1000
        deadline = time.monotonic() + within_s
        while True:
            try:
                self._seen = await client.fetch_all_metadata()
            except KafkaError as exc:
                if time.monotonic() >= deadline:
                    raise KafkaConnectionError(
                        f"no broker gave metadata in {within_s:g} s"
                    ) from exc
                await asyncio.sleep(client._retry_backoff)
                continue
            topics: set[str] = self._seen.topics()
            return topics

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        known: set[int] | None = super().partitions_for_topic(topic)
        if not known and self._seen is not None:
            return self._seen.partitions_for_topic(topic)
        return known


class _LongPollConsumer(_Consumer):
    """A consumer of Apache Kafka: its fetches long-poll and its ``end_offsets`` are right."""

    trusts_end_offsets = True


class _BackoffConsumer(_Consumer):
    """A consumer whose fetch wait follows a :class:`FetchBackoff` after every ``getmany``.

    aiokafka reads the wait from its fetcher for each fetch request it builds; it has no
    public setter, hence the private attribute.
    """

    def __init__(self, *topics: str, backoff: FetchBackoff, **config: Any) -> None:
        super().__init__(*topics, fetch_max_wait_ms=backoff.short_ms, **config)
        self._backoff = backoff

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        batch = await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        self._fetcher._fetch_max_wait_ms = self._backoff.after_poll(bool(batch))
        return batch


def make_consumer(
    bootstrap: str,
    settings: Settings,
    *,
    group_id: str | None,
    client_id: str,
    topics: Sequence[str] = (),
    max_records: int | None = None,
) -> AIOKafkaConsumer:
    """A consumer with manual commits: offsets move only after the work is produced.

    On Apache Kafka it long-polls; on the embedded broker its short fetch wait backs off while
    idle (:class:`FetchBackoff`). It authenticates as ``settings`` say (choreo.kafka.security).
    """
    config: dict[str, Any] = {
        **security_of(settings).client_options(),
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        "max_poll_records": max_records,
    }
    if kind_of(bootstrap, settings) == "kafka":
        # read_committed: a record of a transaction that aborts is never seen (no-op until a
        # producer writes transactionally; the embedded broker cannot hide aborted records)
        return _LongPollConsumer(
            *topics,
            fetch_max_wait_ms=KAFKA_FETCH_WAIT_MS,
            isolation_level="read_committed",
            **config,
        )
    backoff = FetchBackoff(settings.fetch_max_wait_ms, settings.fetch_idle_wait_ms)
    return _BackoffConsumer(*topics, backoff=backoff, **config)


async def acked(sends: Iterable[Awaitable[Awaitable[Any]]]) -> list[Any]:
    """Queue every send, then wait until the broker has acknowledged them all; return the
    acks (each a ``RecordMetadata``: partition, offset), in order.

    ``producer.send`` returns once a record is queued, with a future for its ack; queueing
    all of them before waiting lets the producer batch them.
    """
    futures = [await send for send in sends]
    return list(await asyncio.gather(*futures))


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (murmur2, as in Java)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def key_of(record: ConsumerRecord[bytes, bytes], *, strict: bool = False) -> str | None:
    """The record's key as text; ``strict`` raises UnicodeDecodeError on bytes that are not
    UTF-8, else they read as U+FFFD (for logs and dead letters, never for a trace id)."""
    if record.key is None:
        return None
    return record.key.decode("utf-8", "strict" if strict else "replace")


def headers_of(record: ConsumerRecord[bytes, bytes]) -> Headers:
    """A consumed record's headers as the list a producer accepts."""
    return list(record.headers or ())


def forward_headers(record: ConsumerRecord[bytes, bytes]) -> Headers:
    """Headers for a record produced because of ``record``: its headers, with the current
    span's trace context in place of the one it carried (see choreo.observe.telemetry)."""
    return inject(headers_of(record))


class DeadLetters:
    """Sends records a consumer cannot accept to the dead-letter topic, bytes intact."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        consumer: str,
        limit: RecordLimit | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._consumer = consumer
        #: Over it, the letter's copy of the original is cut (see RecordLimit.dead_letter).
        self.limit = limit or RecordLimit()

    def letter(
        self, record: ConsumerRecord[bytes, bytes], reason: str
    ) -> tuple[str, bytes | None, bytes, Headers]:
        """The dead letter of ``record`` as (topic, key, value, headers), for a caller that
        writes it itself (in a transaction, say); :meth:`noted` then counts and logs it."""
        letter = DeadLetter(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=key_of(record),
            reason=reason,
            consumer=self._consumer,
            original=record.value or b"",
        )
        return self._topic, record.key, self.limit.dead_letter(letter), forward_headers(record)

    async def send(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Publish and wait for the ack, so the caller may commit past the record."""
        topic, key, value, headers = self.letter(record, reason)
        await self._producer.send_and_wait(topic, value, key=key, headers=headers)
        self.noted(record, reason)

    def noted(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Count and log a dead letter once it is written."""
        metrics.DEAD_LETTERS.labels(consumer=self._consumer, topic=record.topic).inc()
        log.warning(
            "dead-lettered record",
            extra={
                "trace_id": key_of(record),
                "topic": record.topic,
                "offset": record.offset,
                "reason": reason,
            },
        )


async def read_to_end(
    consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition], *, settle_s: float = 0.0
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Yield every record of ``partitions``, from the beginning to their end when called.

    ``consumer`` must have no group (it is assigned here). Where a partition ends comes from
    ``end_offsets`` on Apache Kafka (so an empty partition costs no fetch wait) and from the
    high watermark of fetch responses elsewhere (the embedded broker's ``end_offsets`` is wrong
    after batched writes).

    With ``settle_s`` (seconds), a partition whose committed end (last stable offset) is
    behind its high watermark is read on to that watermark, for up to ``settle_s``: a
    transaction commits on each of its partitions in turn (KIP-98's markers), so a reader that
    has seen one of its records elsewhere, e.g. a trace's result, would otherwise miss its
    records here, e.g. the trace's last hop. Records of transactions still open at the limit
    are left out, as without it.
    """
    parts = list(partitions)
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    pending = set(parts)
    targets: dict[TopicPartition, int] = {}
    trusted = getattr(consumer, "trusts_end_offsets", False)
    if trusted:
        targets = await consumer.end_offsets(parts)
        for tp in parts:
            if await consumer.position(tp) >= targets[tp]:
                pending.discard(tp)
    settled_by = time.monotonic() + settle_s
    extended: set[TopicPartition] = set()
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
            settling = time.monotonic() < settled_by
            if await consumer.position(tp) < targets[tp]:
                if tp in extended and not settling:
                    pending.discard(tp)  # still undecided: left out
                continue
            stable = consumer.last_stable_offset(tp)
            undecided = stable is not None and 0 <= stable < high
            if trusted and settling and undecided and tp not in extended:
                extended.add(tp)
                targets[tp] = high  # a transaction is being decided at the end: wait for it
                continue
            pending.discard(tp)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, within_s: float) -> list[int]:
    """The partition numbers of ``topic``, sorted, once the broker's metadata has them: a topic
    created a moment ago (Apache Kafka elects its leaders just after) or not yet created.

    Metadata is polled every 0.2 s for up to ``within_s`` seconds (it has no wake-up); an
    empty list means the topic did not appear in that time.
    """
    deadline = time.monotonic() + within_s
    while True:
        await consumer.topics()  # refreshes the metadata
        if numbers := consumer.partitions_for_topic(topic):
            return sorted(numbers)
        if time.monotonic() >= deadline:
            return []
        await asyncio.sleep(0.2)


async def read_topic(
    bootstrap: str, settings: Settings, topic: str, partitions: Iterable[int] | None = None
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` (or of some of its partitions), read once to the end; none
    when the topic does not exist."""
    consumer = make_consumer(bootstrap, settings, group_id=None, client_id="choreo-reader")
    await consumer.start()
    try:
        if partitions is None:
            await consumer.topics()  # refreshes metadata, so a fresh topic's partitions show
            numbers = sorted(consumer.partitions_for_topic(topic) or ())
        else:
            numbers = list(partitions)
        if not numbers:
            return []  # a topic not created yet has no records
        return [r async for r in read_to_end(consumer, [TopicPartition(topic, p) for p in numbers])]
    finally:
        await consumer.stop()


def transient(exc: BaseException) -> bool:
    """True for a broker error worth retrying: a timeout, a leader change, a lost connection.

    aiokafka marks retriable protocol errors (RequestTimedOutError, NotLeaderForPartition,
    ...) with ``retriable``; a commit refused because the group rebalanced is retried too
    (the records are read again from the committed offset).
    """
    return isinstance(
        exc,
        (
            KafkaConnectionError,
            KafkaTimeoutError,
            CommitFailedError,
            asyncio.TimeoutError,
            ConnectionError,
        ),
    ) or (isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False)))


class Outage:
    """Back-off for a run of broker failures, and the point at which to give up.

    ``failed`` returns how long to wait before the next try (0.5 s doubling to 10 s) and
    raises :class:`BrokerOutage` once failures have lasted ``limit_s`` seconds; ``ok`` ends
    the run. The clock is monotonic: wall-clock jumps neither extend nor cut an outage.
    """

    def __init__(self, limit_s: float, service: str) -> None:
        self.limit_s = limit_s
        self.service = service
        self._since: float | None = None
        self._delay = 0.0

    def failed(self, exc: BaseException) -> float:
        now = time.monotonic()
        if self._since is None:
            self._since, self._delay = now, 0.5
        else:
            self._delay = min(10.0, self._delay * 2)
        lasted = now - self._since
        if lasted >= self.limit_s:
            raise BrokerOutage(
                f"{self.service}: the broker has not answered for {lasted:.0f}s "
                f"(limit {self.limit_s:g}s, CHOREO_BROKER_OUTAGE_S); last error: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        log.warning(
            "broker error, retrying",
            extra={
                "service": self.service,
                "error": f"{type(exc).__name__}: {exc}",
                "retry_in_s": self._delay,
                "outage_s": round(lasted, 1),
            },
        )
        return self._delay

    def ok(self) -> None:
        if self._since is not None:
            log.warning(
                "broker answers again",
                extra={
                    "service": self.service,
                    "outage_s": round(time.monotonic() - self._since, 1),
                },
            )
        self._since = None
