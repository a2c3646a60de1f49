"""The keeper service: the Kafka loop around the keeper's state machine (choreo.keeper.machine).

One consumer group reads tasks, the outbox and control verdicts. All topics share a partition
count and the trace id is the key everywhere, so the keeper that owns partition *p* owns every
trace on it: it is the single writer of those traces' state, and no two writers ever race.

Per batch the keeper produces the admissions it applied as it logged them (if any) and waits
for their acks, then the forwards, hop records, results and conflicts, and waits, then the
touched traces' snapshots, waits again, and only then commits. On
Apache Kafka (choreo.kafka.transactions) each partition's share of a batch is instead one
transaction: its outputs, snapshots, dead letters and input offsets, all or nothing. After a
crash it restores each partition from the latest snapshots plus the results already written,
and re-reads the outbox from the committed offset; the event ids in each snapshot make that
re-read idempotent. A broker error takes the same path without a restart.

``KeeperService`` is an async context manager (choreo.kafka.service): its clients start on
enter and stop on exit, so a keeper runs in any event loop as well as in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import StatusCode

from choreo.kafka.blobs import BlobReader
from choreo.kafka.clients import (
    Outage,
    acked,
    make_consumer,
    partition_for,
    read_to_end,
    transient,
)
from choreo.kafka.limits import HEADROOM, RecordLimit, broker_limit
from choreo.kafka.security import NOT_ALLOWED
from choreo.kafka.service import ConsumerService, wait_or_stop
from choreo.kafka.transactions import Output, Writes, sends_of
from choreo.keeper.batch import Batch
from choreo.keeper.machine import Handler, Keeper
from choreo.observe import metrics, telemetry
from choreo.observe.settings import Settings
from choreo.schemas import TerminalResult, decode
from choreo.schemas.blobs import Held
from choreo.schemas.deltas import StateLog
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec

log = logging.getLogger(__name__)


class _Rebuild(ConsumerRebalanceListener):
    """Restores a partition's traces before the keeper reads a single record of it."""

    def __init__(self, service: KeeperService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self.service.transactions is not None:  # see Transactions.release
            await self.service.transactions.release({str(tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in assigned})
        try:
            await self.service.take_over(numbers)
        except Exception:  # the broker failed mid-read: rebuild again before reading on
            log.exception("restoring partitions failed; retrying")
            self.service._stale = True


class KeeperService(ConsumerService):
    """The keeper's Kafka loop: read a batch, transition, produce in phases, commit.

    Use as ``async with KeeperService(spec, bootstrap, settings) as keeper: await
    keeper.run(stop)``, inside a running event loop.
    """

    def __init__(self, spec: MeshSpec, bootstrap: str, settings: Settings) -> None:
        topics = Topics(settings.topic_prefix)
        self.spec = spec
        self.keeper = Keeper(spec, topics, settings.blob_bytes)
        #: The topics the keeper reads, each with what it does to one record.
        self._handlers: dict[str, Handler] = {
            topics.tasks: self.keeper.intake,
            topics.outbox: self.keeper.apply,
            topics.control: self.keeper.control,
        }
        super().__init__(
            bootstrap,
            settings,
            group=topics.keeper_group,
            client_id="choreo-keeper",
            inputs=list(self._handlers),
            consumer_name="keeper",
            max_records=500,
        )
        metrics.prime_keeper(
            list(self._handlers),
            [(name, f.conflict) for name, f in spec.state.items() if f.reducer == "replace"],
        )
        #: Fetches values by reference when restoring (choreo.kafka.blobs).
        self.blobs = BlobReader(bootstrap, settings, "choreo-keeper-blobs")
        #: Partition numbers held and restored; a partition lost in a rebalance leaves it.
        self._owned: set[int] = set()
        self.limit = RecordLimit(settings.max_record_bytes - HEADROOM)
        #: A broker error left output unacknowledged: rebuild before reading on.
        self._stale = False
        #: The broker refused a batch outright: handle records one by one to find which.
        self._isolating = False

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _Rebuild(self)

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        """Learn the record limit of the keeper's topics before reading a record."""
        self.limit = await broker_limit(
            self.bootstrap, list(self._handlers), self.settings.max_record_bytes, self.security
        )
        self.dead_letters.limit = self.limit
        # a chunk is a record of its own: at most half the limit, whatever the setting says
        self.keeper.blobs.threshold = min(self.settings.blob_bytes, self.limit.max_bytes // 2)
        stack.push_async_callback(self.blobs.close)

    async def take_over(self, partitions: list[int]) -> None:
        """Own ``partitions``: fence their previous owner's producers (which settles its last
        transaction), restore their traces, and read on from their committed offsets.

        Only after the fence are the committed offsets read: before it, a commit the previous
        owner made just before it died may still be on its way to the group coordinator, and
        the consumer may have fetched from an older offset. The seek follows the restore with
        no await between, so no record read from before it is ever applied.
        """
        if self.transactions is None:
            await self.rebuild(partitions)
            return
        await self.transactions.own(str(p) for p in partitions)
        # every partition: a rebalance resets the positions of those kept too
        offsets = await self.committed(list(self.consumer.assignment()))
        await self.rebuild(partitions)
        self.seek(offsets)

    async def rebuild(self, partitions: list[int]) -> None:
        """Load the latest snapshots and the written results of newly owned partitions.

        A partition kept across a rebalance was read by no one else meanwhile, so it is not
        read again; one lost and later regained is, since another keeper may have advanced
        its traces in between (``restore`` keeps the newer version).
        """
        self.keeper.partitions = len(self.consumer.partitions_for_topic(self.topics.outbox) or ())
        self.keeper.blobs.partitions = self.keeper.partitions
        fresh = sorted(set(partitions) - self._owned)
        self._forget(self._owned - set(partitions))
        self._owned &= set(partitions)
        if not fresh:
            return
        reader = make_consumer(
            self.bootstrap, self.settings, group_id=None, client_id="choreo-keeper-rebuild"
        )
        await reader.start()
        try:
            parts = [TopicPartition(self.topics.state, p) for p in fresh]
            log_ = StateLog()
            async for rec in read_to_end(reader, parts):
                log_.add(rec.key, rec.value)
            self.keeper.restore_log(log_)
            await self._fetch_values()
            parts = [TopicPartition(self.topics.results, p) for p in fresh]
            async for rec in read_to_end(reader, parts):
                if rec.value:
                    self.keeper.mark_finished(decode(rec.value, TerminalResult))
        finally:
            await reader.stop()
        self._owned.update(fresh)
        running = sum(
            1
            for s in self.keeper.traces.values()
            if s.status == "running" and s.trace_id not in self.keeper.finished
        )
        metrics.TRACES_IN_FLIGHT.set(running)
        log.info("partitions restored", extra={"partitions": fresh, "traces": running})

    async def _fetch_values(self) -> None:
        """Fetch the values by reference of the traces just restored (the state log holds
        references; the reducers need values)."""
        values: dict[str, dict[str, tuple[Any, Held]]] = {}
        for trace_id, name, ref in list(self.keeper.refs()):
            values.setdefault(trace_id, {})[name] = (await self.blobs.value(ref), ref)
        for trace_id, fetched in values.items():
            self.keeper.resolve(trace_id, fetched)

    def _forget(self, lost: set[int]) -> None:
        """Drop the traces of partitions now owned by another keeper: their copies here
        would only go stale, and are read afresh if the partition comes back."""
        if not lost:
            return
        count = len(self.consumer.partitions_for_topic(self.topics.outbox) or ())
        for trace_id in [t for t in self.keeper.traces if partition_for(t, count) in lost]:
            self.keeper.forget(trace_id)

    async def run(self, stop: asyncio.Event) -> None:
        """Read, transition, produce, commit until ``stop``; sweep deadlines on a timer.

        A broker error (a produce or commit that timed out, a leader change, a lost
        connection) is retried with back-off: the owned partitions are rebuilt from what the
        broker holds and re-read from their committed offsets, exactly as after a restart,
        so nothing is lost and no terminal record is written twice. The keeper gives up,
        saying why (``BrokerOutage``), only once the broker has failed for
        ``broker_outage_s``.
        """
        outage = Outage(self.settings.broker_outage_s, "keeper")
        next_sweep = time.monotonic()
        while not stop.is_set():
            try:
                if self._stale:
                    await self._recover()
                records = self._restored_only(await self.consumer.getmany(timeout_ms=200))
                if self._stale:
                    continue  # a rebalance could not restore: nothing read is applied
                if records:
                    await self._process(records)
                if time.monotonic() >= next_sweep:
                    await self._sweep()
                    next_sweep = time.monotonic() + self.settings.deadline_sweep_s
                await self.lag.update()
                outage.ok()
            except KafkaError as exc:
                if isinstance(exc, NOT_ALLOWED):
                    raise  # a missing ACL: exit saying so; the records wait for the fix
                self._stale = True
                if not transient(exc):
                    self._isolating = True  # one of these records makes the broker refuse
                await wait_or_stop(stop, outage.failed(exc))
            except (OSError, TimeoutError) as exc:
                self._stale = True
                await wait_or_stop(stop, outage.failed(exc))

    def _restored_only(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """The records of partitions whose traces are restored; the others are read again.

        A rebalance restores newly assigned partitions in its listener, and a poll can
        return their records before that restore has finished: applied then, every step of
        a trace not restored yet would look like a step of an unknown trace.
        """
        ready = {}
        for tp, partition_records in records.items():
            if tp.partition in self._owned:
                ready[tp] = partition_records
            elif tp in self.consumer.assignment():
                self.consumer.seek(tp, partition_records[0].offset)
        return ready

    async def _recover(self) -> None:
        """Forget what was not acknowledged: rebuild the owned partitions, seek back to
        their committed offsets."""
        owned = sorted({tp.partition for tp in self.consumer.assignment()})
        self._forget(set(owned))
        self._owned.clear()
        if self.transactions is not None:
            # New producers settle this keeper's own last commits too: a committed offset is
            # only certain once the transaction's markers are written, which their start
            # waits for (KIP-447's stable offsets are not in aiokafka's offset fetch).
            await self.transactions.close()
            await self.transactions.own(str(p) for p in owned)
        offsets = await self.committed(list(self.consumer.assignment()))
        await self.rebuild(owned)
        self.seek(offsets)
        self._stale = False
        log.warning("partitions rebuilt after a broker error", extra={"partitions": owned})

    async def _process(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        if not self._isolating:
            await self._transition(records)
            return
        # After the broker refused a batch outright, each record goes alone: the one it
        # refuses again is dead-lettered and the partition moves on, instead of a crash loop.
        for tp, partition_records in records.items():
            for record in partition_records:
                try:
                    await self._transition({tp: [record]})
                except KafkaError as exc:
                    if transient(exc) or isinstance(exc, NOT_ALLOWED):
                        raise
                    await self._recover()
                    await self._refused(
                        record,
                        f"the broker refused the keeper's output for "
                        f"this record: {type(exc).__name__}: {exc}",
                    )
            self.consumer.seek(tp, partition_records[-1].offset + 1)
        self._isolating = False

    async def _refused(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Dead-letter a record the broker refuses the output of, and commit past it."""
        tp = TopicPartition(record.topic, record.partition)
        if self.transactions is None:
            await self.dead_letters.send(record, reason)
            await self.consumer.commit({tp: record.offset + 1})
            return
        await self.transactions.run(
            str(record.partition),
            sends_of([self.dead_letters.letter(record, reason)]),
            {tp: record.offset + 1},
        )
        self.dead_letters.noted(record, reason)

    async def _transition(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Handle a batch, produce everything it caused, then commit past it: in two acked
        phases and a commit, or, with transactions, one transaction per partition number."""
        if self.transactions is not None:
            await self._transactions(records)
            return
        batch, letters = self._handle_all(records)
        await self._flush(batch)
        await asyncio.gather(*(self.dead_letters.send(r, why) for r, why in letters))
        await self.consumer.commit(_next_offsets(records))

    def _handle_all(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> tuple[Batch, list[tuple[ConsumerRecord[bytes, bytes], str]]]:
        """Every record's output, and the records to dead-letter with their reasons."""
        batch = Batch(limit=self.limit, blobs=self.keeper.blobs)
        letters: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        for tp, partition_records in records.items():
            for record in partition_records:
                with telemetry.consume_span(record, group=self.group) as span:
                    reason = self.keeper.handle(self._handlers[tp.topic], record, batch)
                    if reason:
                        span.set_status(StatusCode.ERROR, reason)
                        letters.append((record, reason))
        return batch, letters

    async def _transactions(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """One transaction per partition number of the batch (its tasks, outbox and control
        records: the traces of one partition), run concurrently.

        A trace's outputs all go to its own partition number, so each transaction holds
        whole transitions. Any failure leaves the in-memory traces ahead of what committed:
        the caller's recovery rebuilds them from what the broker holds.
        """
        assert self.transactions is not None
        by_partition: dict[int, dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] = {}
        for tp, partition_records in records.items():
            by_partition.setdefault(tp.partition, {})[tp] = partition_records
        runs = []
        for number, part in sorted(by_partition.items()):
            batch, letters = self._handle_all(part)
            runs.append(
                (
                    batch,
                    letters,
                    self.transactions.run(
                        str(number), self._writes(batch, letters, number), _next_offsets(part)
                    ),
                )
            )
        outcomes = await asyncio.gather(*(run for _, _, run in runs), return_exceptions=True)
        for (batch, letters, _), outcome in zip(runs, outcomes, strict=True):
            if outcome is None:
                self.keeper.settle(batch)
                for record, why in letters:
                    self.dead_letters.noted(record, why)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _writes(
        self, batch: Batch, letters: list[tuple[ConsumerRecord[bytes, bytes], str]], number: int
    ) -> Writes:
        """One partition's share of a batch, for its transaction: the chunks of values by
        reference first (their offsets go into the records naming them), then the rest."""

        async def writes(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
            await self._write_chunks(batch, producer)
            outputs: list[Output] = [
                (t, k.encode(), v, h) for t, k, v, h in batch.first + batch.sends
            ]
            outputs += [
                (self.topics.state, key.encode(), value, [], number)
                for _, key, value in batch.state_records()
            ]
            outputs += [(t, k.encode(), v, h) for t, k, v, h in batch.last]
            outputs += [self.dead_letters.letter(r, why) for r, why in letters]
            return await sends_of(outputs)(producer)

        return writes

    async def _write_chunks(self, batch: Batch, producer: AIOKafkaProducer) -> None:
        """Write ``batch``'s chunks of values by reference to the blob topic, each to its
        trace's partition keyed by its SHA-256, and give the batch's records their offsets."""
        if not batch.chunks:
            return
        acks = await acked(
            producer.send(
                self.topics.blobs, data, key=chunk.sha256.encode(), partition=chunk.partition
            )
            for _, chunk, data in batch.chunks
        )
        batch.place(
            {
                (chunk.sha256, chunk.partition): ack.offset
                for (_, chunk, _), ack in zip(batch.chunks, acks, strict=True)
            }
        )

    async def _flush(self, batch: Batch) -> None:
        """Produce a batch in its acknowledged phases: the chunks of its values by reference
        (if any), the admissions it applied as it logged them (if any), the records they and
        the rest of the batch caused, the state log's records, the terminal results."""
        await self._write_chunks(batch, self.producer)
        for phase in (batch.first, batch.sends):
            await acked(self.producer.send(t, v, key=k.encode(), headers=h) for t, k, v, h in phase)
        # a delta's key is not its trace id: its partition is named, the trace's own
        count = self.keeper.partitions
        await acked(
            self.producer.send(
                self.topics.state, value, key=key.encode(), partition=partition_for(trace_id, count)
            )
            for trace_id, key, value in batch.state_records()
        )
        await acked(
            self.producer.send(t, v, key=k.encode(), headers=h) for t, k, v, h in batch.last
        )
        self.keeper.settle(batch)

    async def _sweep(self) -> None:
        """End traces past their deadline: log each decision to the outbox (see Keeper.sweep)."""
        batch = Batch(limit=self.limit, blobs=self.keeper.blobs)
        if self.keeper.sweep(datetime.now(UTC), batch):
            await self._flush(batch)
            log.warning("deadline sweep ends traces", extra={"traces": len(batch.sends)})


def _next_offsets(
    records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
) -> dict[TopicPartition, int]:
    """The offsets to commit after ``records``: one past each partition's last."""
    return {tp: recs[-1].offset + 1 for tp, recs in records.items()}
