"""Exactly-once output on Apache Kafka: a transactional producer per unit of input.

A service that reads, works and writes (the keeper, an agent) puts its outputs and the input
offsets they consume into one Kafka transaction (KIP-98), so a ``read_committed`` reader sees
either all of a batch's outputs with its offsets moved past it, or none of them. The
embedded broker has no transactions; there the services keep their at-least-once path with
idempotent apply (docs/ARCHITECTURE.md, "Delivery guarantees").

Fencing. aiokafka's ``send_offsets_to_transaction`` takes a group id only, not the consumer's
group metadata, so the broker cannot fence a stale member by its generation (KIP-447). A
predecessor is fenced by its transactional id instead, as Kafka Streams did before KIP-447:
the id is stable per *unit of input* (``<group>.<unit>``, a unit being a partition number or a
topic-partition), so whichever process owns that input next starts a producer with the same
id; Kafka then aborts the predecessor's open transaction, completes one it had committed, and
refuses its producer from then on (``ProducerFenced``). Only after that does the new owner
read committed offsets and state, so it never sees a commit still being written.

That order holds only if a producer is started nowhere else. A process whose producer failed
(a timeout in a broker outage) may meanwhile have lost its input to another member without
knowing it yet (the group moved on while it could not reach the coordinator); a new producer
it started on its own would fence that new owner and commit what it held, over the new
owner's commit of the same input: the same output twice. So a unit whose producer was dropped
is not written to again until the caller takes it again (``take``) and reads the committed
offsets after that, as a new owner does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    ProducerFenced,
    TransactionCoordinatorFenced,
)

from choreo.kafka.clients import kind_of, make_producer
from choreo.kafka.errors import Fenced
from choreo.kafka.security import KafkaSecurity
from choreo.observe.settings import Settings

log = logging.getLogger(__name__)

#: How long a producer's open transaction may stay open before the broker aborts it, in ms.
#: A successor aborts it at once; this bounds how long a stalled process blocks readers. It is
#: well past a broker stall the services ride out (a request times out at 40 s and is
#: retried): the broker aborting a live producer's transaction bumps its epoch, which the
#: producer can only take as being fenced, and the service exits for its supervisor.
TRANSACTION_TIMEOUT_MS = 300_000
#: Seconds to wait for a producer to stop before abandoning it (its broker may be gone).
STOP_GRACE_S = 10.0


def exactly_once(bootstrap: str, settings: Settings) -> bool:
    """True when outputs go in transactions: ``CHOREO_EXACTLY_ONCE`` is ``auto`` (the default)
    and the broker is Apache Kafka, which has them; ``off`` keeps at-least-once everywhere."""
    return settings.exactly_once == "auto" and kind_of(bootstrap, settings) == "kafka"


#: What a transaction writes: it queues its records on the producer it is given and returns
#: their acks' futures.
Writes = Callable[[AIOKafkaProducer], Awaitable[list[asyncio.Future[Any]]]]

_FENCED = (ProducerFenced, InvalidProducerEpoch, TransactionCoordinatorFenced)


class NotHeld(KafkaError):
    """A transaction on a unit with no producer here: never taken, given up, or dropped after
    a failed transaction. Retriable once the caller has taken the unit again (``take``) and
    read its committed offsets after that; a service's broker-error path does both."""

    retriable = True


class Transactions:
    """The transactional producers of one consumer group member, one per owned unit.

    ``own`` starts a producer for every newly owned unit (fencing its predecessor) and stops
    those of units given up; ``take`` starts one unit's; ``run`` writes one transaction on a
    unit's producer. Any failure inside a transaction drops that producer and re-raises; the
    unit's next ``run`` raises :class:`NotHeld` until the caller takes it again (the new
    producer aborts what was left open, or completes a commit whose answer was lost) and
    re-reads its committed offsets. A fenced producer raises :class:`Fenced`.

    Each unit has a lock held for the whole of a transaction, and a producer is only started
    or stopped under it: a rebalance that gives a unit up while its transaction commits (the
    listener runs beside the caller's loop) waits for the commit's outcome, as Kafka Streams
    commits before it hands over a task. Stopped mid-commit, aiokafka's producer never
    resolves the commit, and the caller would wait forever.
    """

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        client_id: str,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.group_id = group_id
        self.client_id = client_id
        self._producers: dict[str, AIOKafkaProducer] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def transactional_id(self, unit: str) -> str:
        return f"{self.group_id}.{unit}"

    def owned(self) -> set[str]:
        return set(self._producers)

    async def own(self, units: Iterable[str]) -> None:
        """Hold producers for exactly ``units``: new ones started (each fences and settles
        its predecessor's transaction), others stopped. Raises :class:`Fenced`."""
        wanted = set(units)
        await self.release(set(self._producers) - wanted)
        fresh = sorted(wanted - set(self._producers))
        started = await asyncio.gather(*(self.take(u) for u in fresh), return_exceptions=True)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        if fresh:
            log.info(
                "transactional producers started", extra={"units": fresh, "group": self.group_id}
            )

    async def release(self, units: Iterable[str]) -> None:
        """Stop the producers of ``units`` (partitions revoked). Owned again, a unit gets a
        new producer, whose start waits until this one's last commit is fully written, so
        the committed offsets read after it are current."""
        await asyncio.gather(*(self._drop(u) for u in sorted(set(units))))

    async def take(self, unit: str) -> None:
        """Start ``unit``'s producer unless it has one, once no transaction holds it; its start
        fences any other producer of the unit and settles that one's last transaction. Only
        committed offsets read after this are current. Raises :class:`Fenced`."""
        async with self._locks[unit]:
            if unit not in self._producers:
                self._producers[unit] = await self._start(unit)

    async def _drop(self, unit: str) -> None:
        """Stop ``unit``'s producer once its transaction (if one is running) has ended."""
        async with self._locks[unit]:
            if (producer := self._producers.pop(unit, None)) is not None:
                await _stop(producer)

    async def _start(self, unit: str) -> AIOKafkaProducer:
        producer = make_producer(
            self.bootstrap,
            self.client_id,
            transactional_id=self.transactional_id(unit),
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            security=self.security,
        )
        try:
            await producer.start()
            # The producer id (and with it the fencing) is settled on first use; do it now,
            # before the caller reads offsets or state the predecessor may still be writing.
            await producer.begin_transaction()
            await producer.abort_transaction()
        except _FENCED as exc:
            await _stop(producer)
            raise Fenced(
                f"transactional id {self.transactional_id(unit)} is owned by a newer "
                f"producer: {type(exc).__name__}"
            ) from exc
        except BaseException:
            await _stop(producer)
            raise
        return producer

    async def run(
        self, unit: str, writes: Writes, offsets: dict[TopicPartition, int] | None = None
    ) -> None:
        """One transaction on ``unit``'s producer: ``writes``, then ``offsets`` (the next
        offset to read per input partition) for the group, then the commit.

        Raises :class:`Fenced` when a newer producer holds the id, :class:`NotHeld` when
        this object holds none for ``unit``; any other error (a timeout, a refused record)
        drops the producer and is re-raised: the unit must be taken again before its next
        transaction.
        """
        async with self._locks[unit]:
            # bounded: past its timeout the broker has aborted the transaction anyway
            async with asyncio.timeout(TRANSACTION_TIMEOUT_MS / 1000):
                await self._run(unit, writes, offsets)

    async def _run(
        self, unit: str, writes: Writes, offsets: dict[TopicPartition, int] | None
    ) -> None:
        producer = self._producers.get(unit)
        if producer is None:
            # Never start one here: this process may no longer own the unit's input, and a
            # new producer would fence the member that does (see the module's docstring).
            raise NotHeld(f"no producer holds transactional id {self.transactional_id(unit)}")
        try:
            await producer.begin_transaction()
            acks = await writes(producer)
            # The offsets travel while the records are written. Every ack is awaited before
            # the commit: aiokafka would commit a transaction one of whose records failed.
            await asyncio.gather(
                asyncio.gather(*acks),
                producer.send_offsets_to_transaction(dict(offsets), self.group_id)
                if offsets
                else asyncio.sleep(0),
            )
            await producer.commit_transaction()
        except _FENCED as exc:
            self._producers.pop(unit, None)
            await _stop(producer)
            raise Fenced(
                f"transactional id {self.transactional_id(unit)} was fenced: {type(exc).__name__}"
            ) from exc
        except BaseException:
            # taken again, the unit gets a new producer, which aborts or completes this one's
            self._producers.pop(unit, None)
            await _stop(producer)
            raise

    async def close(self) -> None:
        """Stop every producer once its transaction, if one is running, has ended."""
        await self.release(set(self._producers))


async def _stop(producer: AIOKafkaProducer) -> None:
    """Stop ``producer`` within STOP_GRACE_S, whatever state its transaction is in."""
    try:
        async with asyncio.timeout(STOP_GRACE_S):
            await producer.stop()
    except Exception as exc:  # a fenced or broken producer may fail to flush: it is dropped
        log.warning(
            "producer stopped with an error", extra={"error": f"{type(exc).__name__}: {exc}"}
        )


#: One record to write: (topic, key, value, headers), or with a fifth item, the partition to
#: write it to (else the key's); a value of None is a tombstone.
Output = (
    tuple[str, bytes | None, bytes | None, Any]
    | tuple[str, bytes | None, bytes | None, Any, int | None]
)


def sends_of(records: Iterable[Output]) -> Writes:
    """Writes that queue ``records`` (each an :data:`Output`)."""

    async def writes(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
        return [
            await producer.send(
                topic, value, key=key, headers=headers, partition=where[0] if where else None
            )
            for topic, key, value, headers, *where in records
        ]

    return writes
