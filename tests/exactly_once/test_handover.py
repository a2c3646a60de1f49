"""A unit given up while its transaction is in flight (a rebalance, whose listener runs beside
the service's loop) waits for that transaction to end: the commit lands, nothing hangs.

Before, the listener stopped the unit's producer mid-commit; aiokafka then never resolved the
commit, and the keeper waited on it forever after a broker stall (every trace of the batch
stranded, no service exited).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import read_topic
from choreo.kafka.transactions import Transactions
from choreo.observe.settings import Settings
from tests.exactly_once.support import new_topics

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_giving_up_a_unit_lets_its_running_transaction_commit(transactional: BrokerHandle) -> None:
    bootstrap = transactional.bootstrap
    topic = f"handover-{uuid.uuid4().hex[:8]}"

    async def scenario() -> list[bytes]:
        await new_topics(bootstrap, topic)
        transactions = Transactions(bootstrap, f"{topic}.group", "test-handover")
        await transactions.own(["0"])
        written, go_on = asyncio.Event(), asyncio.Event()

        async def writes(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
            acks = [await producer.send(topic, b"the batch's output", key=b"t-1")]
            written.set()
            await go_on.wait()  # the rebalance arrives now, mid-transaction
            return acks

        async with asyncio.timeout(60):  # before the fix: the commit never resolved
            running = asyncio.create_task(transactions.run("0", writes))
            await written.wait()
            released = asyncio.create_task(transactions.release(["0"]))
            go_on.set()
            await asyncio.gather(running, released)
        assert transactions.owned() == set()
        records = await read_topic(bootstrap, Settings(), topic)  # read_committed
        return [r.value for r in records if r.value is not None]

    assert asyncio.run(scenario()) == [b"the batch's output"]
