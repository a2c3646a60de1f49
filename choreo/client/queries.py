"""Reading and writing one trace's records on Kafka, for the CLI and the tests.

The trace id is the key on every topic, so everything about a trace sits on one partition
number of each topic; these helpers read only that partition.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from choreo.kafka.clients import (
    make_consumer,
    make_producer,
    partition_for,
    partitions_of,
    read_to_end,
)
from choreo.observe import telemetry
from choreo.observe.settings import Settings
from choreo.schemas import (
    DecodeError,
    HopRecord,
    Record,
    Snapshot,
    Task,
    TerminalResult,
    decode,
    encode,
)
from choreo.schemas.ids import new_id

R = TypeVar("R", bound=Record)
log = logging.getLogger(__name__)


class TraceNotFound(LookupError):
    """No record of this trace exists on the topic."""


async def submit(bootstrap: str, tasks_topic: str, task: Task) -> str:
    """Publish a task keyed by its trace id (assigned here if missing); return the id."""
    return (await send_task(bootstrap, tasks_topic, task)).trace_id


@dataclass(frozen=True)
class Sent:
    """Where a submitted task landed: the keeper names this place as the trace's origin."""

    trace_id: str
    topic: str
    partition: int
    offset: int

    @property
    def origin(self) -> str:
        """``topic/partition/offset``, as the keeper writes it in the admitted snapshot."""
        return f"{self.topic}/{self.partition}/{self.offset}"


async def send_task(bootstrap: str, tasks_topic: str, task: Task) -> Sent:
    """Publish a task keyed by its trace id (assigned here if missing); return where it landed.

    The send is the root span of the task's OpenTelemetry trace (or a child of the caller's
    current span): its ``traceparent`` header is what every later step continues.
    """
    if task.trace_id is None:
        task.trace_id = new_id()
    producer = make_producer(bootstrap, "choreo-cli")
    await producer.start()
    try:
        with telemetry.produce_span(tasks_topic, task.trace_id) as span:
            sent = await producer.send_and_wait(
                tasks_topic, encode(task), key=task.trace_id.encode(), headers=telemetry.inject()
            )
            span.set_attributes(
                {
                    "messaging.destination.partition.id": str(sent.partition),
                    "messaging.kafka.offset": sent.offset,
                }
            )
    finally:
        await producer.stop()
    return Sent(task.trace_id, tasks_topic, sent.partition, sent.offset)


async def trace_records(
    bootstrap: str, settings: Settings, topic: str, trace_id: str
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record keyed ``trace_id`` on ``topic``, in log order."""
    consumer = make_consumer(bootstrap, settings, group_id=None, client_id="choreo-cli")
    await consumer.start()
    try:
        await consumer.topics()
        count = len(consumer.partitions_for_topic(topic) or ())
        if count == 0:
            raise TraceNotFound(f"topic {topic!r} does not exist")
        tp = TopicPartition(topic, partition_for(trace_id, count))
        key = trace_id.encode()
        return [r async for r in read_to_end(consumer, [tp]) if r.key == key]
    finally:
        await consumer.stop()


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


async def trace_typed(
    bootstrap: str, settings: Settings, topic: str, trace_id: str, record_type: type[R]
) -> list[R]:
    records = await trace_records(bootstrap, settings, topic, trace_id)
    return [r for r in (decoded(record, record_type) for record in records) if r is not None]


async def hops(bootstrap: str, settings: Settings, topic: str, trace_id: str) -> list[HopRecord]:
    return await trace_typed(bootstrap, settings, topic, trace_id, HopRecord)


async def latest_snapshot(
    bootstrap: str, settings: Settings, topic: str, trace_id: str
) -> Snapshot:
    snapshots = await trace_typed(bootstrap, settings, topic, trace_id, Snapshot)
    if not snapshots:
        raise TraceNotFound(f"no snapshot of trace {trace_id!r} on {topic}")
    return max(snapshots, key=lambda s: (s.version, s.status != "running"))


async def wait_for_result(
    bootstrap: str, settings: Settings, topic: str, trace_id: str, within_s: float
) -> TerminalResult | None:
    """The trace's terminal record, waiting up to ``within_s`` seconds for it to appear."""
    consumer = make_consumer(bootstrap, settings, group_id=None, client_id="choreo-cli")
    await consumer.start()
    try:
        deadline = time.monotonic() + within_s
        count = len(await partitions_of(consumer, topic, within_s))
        if count == 0:
            return None
        tp = TopicPartition(topic, partition_for(trace_id, count))
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        key = trace_id.encode()
        while (left := deadline - time.monotonic()) > 0:
            batch = await consumer.getmany(tp, timeout_ms=int(min(left, 0.5) * 1000))
            for record in batch.get(tp, []):
                if record.key == key and (result := decoded(record, TerminalResult)):
                    return result
        return None
    finally:
        await consumer.stop()
