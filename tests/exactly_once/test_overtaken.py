"""An agent whose commit failed in a broker outage, and whose input partition the group gave to
another replica meanwhile, does not write its step's records again when it retries: the
replica that took the partition over committed that step already.

The failover soak found it (docs/BENCHMARKS.md, run 5: a writer's ``draft.ready`` at two
outbox offsets). The first owner's failed transaction dropped its producer; the second owner
fenced the first, read the committed offset and committed the step; the first, not yet told
that it had lost the partition, then started a new producer of its own for its retry, which
fenced the second in turn, and committed the step once more. Now a partition's producer is
taken again before a retry, and the committed offset read after that decides: moved, what
was held is dropped and the partition read again from there. Replayed here on the parts of
choreo.agent.outbox; tests/exactly_once/test_agent_overtaken.py replays it on a running agent.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError

from choreo.agent.outbox import HeldOutputs, Overtaken, unit_of
from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import DeadLetters, make_consumer, make_producer, read_topic
from choreo.kafka.transactions import Transactions
from choreo.observe.settings import Settings
from tests.exactly_once.support import new_topics

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_a_step_its_partitions_next_owner_committed_is_not_written_again_by_the_last(
    transactional: BrokerHandle,
) -> None:
    bootstrap = transactional.bootstrap
    name = f"overtaken-{uuid.uuid4().hex[:8]}"
    inbox, outbox, dlq = f"{name}.events", f"{name}.outbox", f"{name}.dlq"
    group = f"{name}.agent.writer"
    tp = TopicPartition(inbox, 0)
    settings = Settings()

    async def scenario() -> tuple[list[bytes], int | None, int | None]:
        await new_topics(bootstrap, inbox, outbox, dlq)
        plain = make_producer(bootstrap, "test-overtaken")
        await plain.start()
        try:
            await plain.send_and_wait(inbox, b"draft.requested", key=b"t-1")
        finally:
            await plain.stop()
        [record] = await read_topic(bootstrap, settings, inbox)
        reader = make_consumer(bootstrap, settings, group_id=group, client_id="test-overtaken")
        await reader.start()

        async def committed(tps: list[TopicPartition]) -> dict[TopicPartition, int | None]:
            return {p: await reader.committed(p) for p in tps}

        async def times_out(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
            raise KafkaTimeoutError()

        step = [(outbox, b"t-1", b"draft.ready of step 1", [])]
        replicas = [
            HeldOutputs(
                Transactions(bootstrap, group, f"test-overtaken-{n}"),
                DeadLetters(plain, dlq, "agent:writer"),
                committed,
            )
            for n in (1, 2)
        ]
        first, second = replicas
        try:
            # The first replica owns the partition and finishes the step; its commit then
            # times out in the outage (a failed transaction drops its producer, as here).
            await first.transactions.own([unit_of(tp)])
            first.start(await committed([tp]))
            first.hold(record, step)
            with pytest.raises(KafkaTimeoutError):
                await first.transactions.run(unit_of(tp), times_out)
            # The group gives the partition to the second: it fences the first, reads the
            # committed offset, runs the step again and commits it.
            await second.transactions.own([unit_of(tp)])
            second.start(await committed([tp]))
            second.hold(record, step)
            await second.commit(tp, record.offset + 1)
            # The first, not told yet, retries its commit.
            with pytest.raises(Overtaken) as overtaken:
                await first.commit(tp, record.offset + 1)
            outputs = await read_topic(bootstrap, settings, outbox)  # read_committed
            now = (await committed([tp]))[tp]
        finally:
            for replica in replicas:
                await replica.transactions.close()
            await reader.stop()
        return [r.value for r in outputs if r.value is not None], overtaken.value.offset, now

    outputs, read_again_from, committed_offset = asyncio.run(scenario())
    assert outputs == [b"draft.ready of step 1"]
    assert read_again_from == committed_offset == 1
