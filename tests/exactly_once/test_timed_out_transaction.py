"""A transaction that fails with an indefinite error (a request timed out: did the broker get
it?) never reuses its producer: the next transaction of the unit runs on a new one, started
with the same transactional id when the unit is taken again, which aborts what the old one
left open and fences it. The advice of Jepsen's 2024 analysis of Kafka's transaction
protocol: after a timeout a delayed commit or abort could otherwise land in a later
transaction of the same producer. Nor does a transaction start that producer by itself: the
process may have lost the unit's input meanwhile (see tests/exactly_once/test_overtaken.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError

from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import read_topic
from choreo.kafka.transactions import NotHeld, Transactions
from choreo.observe.settings import Settings
from tests.exactly_once.support import new_topics

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_a_timed_out_transaction_is_abandoned_with_its_producer(
    transactional: BrokerHandle,
) -> None:
    bootstrap = transactional.bootstrap
    topic = f"timeout-{uuid.uuid4().hex[:8]}"
    used: list[AIOKafkaProducer] = []

    async def scenario() -> list[bytes]:
        await new_topics(bootstrap, topic)
        transactions = Transactions(bootstrap, f"{topic}.group", "test-timeout")
        await transactions.own(["0"])

        async def times_out(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
            used.append(producer)
            await (await producer.send(topic, b"written, then the request timed out"))
            raise KafkaTimeoutError()

        async def writes(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
            used.append(producer)
            return [await producer.send(topic, b"the next transaction")]

        with pytest.raises(KafkaTimeoutError):
            await transactions.run("0", times_out)
        with pytest.raises(NotHeld):  # not until the unit is taken again
            await transactions.run("0", writes)
        await transactions.take("0")
        await transactions.run("0", writes)
        await transactions.close()
        records = await read_topic(bootstrap, Settings(), topic)  # read_committed
        return [r.value for r in records if r.value is not None]

    assert asyncio.run(scenario()) == [b"the next transaction"]
    first, second = used
    assert first is not second
    assert first._closed  # stopped, never to commit or abort anything again
