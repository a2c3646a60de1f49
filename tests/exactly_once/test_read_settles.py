"""A read that ends where a transaction is being decided waits for it, for a bounded time.

A transaction commits on each of its partitions in turn, so a client that has seen a trace's
result on one partition may read the trace's hops on another before that partition's commit
marker lands (a read_committed read then ends before the trace's last hop). The client's reads
settle: they read on to the high watermark while the transaction at the end is decided, and
leave out only what is still open after their limit.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import make_consumer, read_to_end
from choreo.observe.settings import Settings
from tests.conftest import wait_until
from tests.exactly_once.support import new_topics

pytestmark = pytest.mark.integration


async def _settled_read(
    bootstrap: str, topic: str, settle_s: float, *, commit: bool
) -> tuple[list[bytes], bool]:
    """Read ``topic`` while a transaction is open at its end; commit it (``commit``) once the
    read has had its first fetch. Returns the values read and whether the read was still
    running when the transaction was decided."""
    await new_topics(bootstrap, topic)
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap)
    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-txn")
    await plain.start()
    await txn.start()
    reader = make_consumer(bootstrap, Settings(), group_id=None, client_id=f"{topic}-reader")
    await reader.start()
    try:
        await plain.send_and_wait(topic, b"committed before")
        await txn.begin_transaction()
        await txn.send_and_wait(topic, b"in the transaction")
        tp = TopicPartition(topic, 0)
        read = asyncio.create_task(_values(reader, tp, settle_s))
        await asyncio.to_thread(
            wait_until,
            lambda: read.done() or (tp in reader.assignment() and reader.highwater(tp) is not None),
            30,
        )
        running = not read.done()
        if commit:
            await txn.commit_transaction()
        values = await asyncio.wait_for(read, settle_s + 30)
        if not commit:
            await txn.abort_transaction()
        return values, running
    finally:
        await reader.stop()
        await txn.stop()
        await plain.stop()


async def _values(reader: AIOKafkaConsumer, tp: TopicPartition, settle_s: float) -> list[bytes]:
    return [r.value or b"" async for r in read_to_end(reader, [tp], settle_s=settle_s)]


def test_a_read_takes_in_a_transaction_committed_while_it_settles(
    transactional: BrokerHandle,
) -> None:
    topic = f"settle-{uuid.uuid4().hex[:8]}"
    values, running = asyncio.run(_settled_read(transactional.bootstrap, topic, 20.0, commit=True))
    assert running, "the read ended at the last stable offset without waiting"
    assert values == [b"committed before", b"in the transaction"]


def test_a_transaction_still_open_after_the_limit_is_left_out(
    transactional: BrokerHandle,
) -> None:
    topic = f"open-{uuid.uuid4().hex[:8]}"
    values, _ = asyncio.run(_settled_read(transactional.bootstrap, topic, 1.0, commit=False))
    assert values == [b"committed before"]
