"""faust's Kafka transport, made to read a transactional topic as the mesh writes it.

The keeper writes hop and state records in transactions (choreo.kafka.transactions). faust
reads them wrongly in two ways, both mended here by subclassing its aiokafka driver:

- It reads ``read_uncommitted`` unless the faust app itself runs exactly-once, so the
  watchdog would judge hops of transactions that aborted (a keeper fenced mid-batch writes
  them again in the transaction that commits). The watchdog's consumer reads
  ``read_committed`` where the broker has transactions.
- It counts the offset after a gap in a partition's offsets as part of the gap
  (faust-streaming/faust#606): the record it just received is treated as acknowledged before
  it is processed, and since every transaction's commit marker is such a gap, each offset
  commit moves the group one record on (measured on Apache Kafka: two offsets per 2.8 s
  commit interval), so its committed offset falls ever further behind and a restart reads
  everything since again. Gaps here end before the record that revealed them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiokafka
from faust.transport.drivers import aiokafka as driver
from faust.types import TP


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    committed_only: ClassVar[bool] = False

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        if self.committed_only:
            # read when the consumer starts; faust offers no setting for it
            consumer._isolation_level = "read_committed"
        return consumer


class _CommittedConsumerThread(_ConsumerThread):
    committed_only = True


class _Consumer(driver.Consumer):
    Thread: ClassVar[type[_ConsumerThread]] = _ConsumerThread

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return self.Thread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # faust passes the offset of the record after the gap as ``offset_to``
        await super()._add_gap(tp, offset_from, offset_to - 1)


class _CommittedConsumer(_Consumer):
    Thread = _CommittedConsumerThread


class Transport(driver.Transport):
    """faust's aiokafka transport with the gap mend (for any broker)."""

    Consumer = _Consumer


class CommittedTransport(Transport):
    """:class:`Transport` that also reads only committed records (for Apache Kafka)."""

    Consumer = _CommittedConsumer
