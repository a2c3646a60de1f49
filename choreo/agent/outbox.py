"""An agent's step records held until they commit with their input offsets, in one transaction.

On a broker with transactions (choreo.kafka.transactions) a finished step's records are not
produced at once: they wait here until every earlier record of their partition has finished
too, and then the records of that finished prefix and the offset past it are written in one
transaction on the partition's own producer. A step killed mid-way, a transaction aborted or a
process fenced thus leaves no record a ``read_committed`` reader sees, and a step whose
records are visible is never run again.

A partition's producer dropped after a failed transaction is taken again before anything
more is written, and the group's committed offset read after that (when the new producer has
fenced every other and settled this process's own last transaction) is compared with the one
known here. Changed, it means another member committed the partition meanwhile (this one had
lost it in a broker outage without knowing yet), or the failed commit had landed after all:
either way what is held is stale, and writing it would commit those steps' records twice.
It is dropped instead (:class:`Overtaken`), and the partition read again from that offset.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from choreo.kafka.clients import DeadLetters, Headers, transient
from choreo.kafka.security import NOT_ALLOWED
from choreo.kafka.transactions import Transactions, sends_of

log = logging.getLogger(__name__)

#: One record to produce: (topic, key, value, headers).
Output = tuple[str, bytes | None, bytes, Headers]


class Overtaken(Exception):
    """A partition was committed up to ``offset`` by a transaction other than the ones known
    here: what this process held of it is dropped, and the caller reads it again from
    ``offset`` (None: the group has no commit for it)."""

    def __init__(self, tp: TopicPartition, offset: int | None) -> None:
        super().__init__(f"{tp.topic}:{tp.partition} was committed up to {offset} meanwhile")
        self.tp, self.offset = tp, offset


def unit_of(tp: TopicPartition) -> str:
    """The transactional unit of an input partition: ``<topic>.<partition>``."""
    return f"{tp.topic}.{tp.partition}"


@dataclass
class _Held:
    record: ConsumerRecord[bytes, bytes]
    outputs: list[Output]
    #: A dead letter's reason, counted once the letter commits.
    letter: str | None = None


@dataclass
class HeldOutputs:
    """Finished steps' records per input partition and offset, until they commit.

    ``committed`` reads the group's committed offsets of partitions from the broker (None
    where there is none): choreo.kafka.service.ConsumerService.committed.
    """

    transactions: Transactions
    dead_letters: DeadLetters
    committed: Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int | None]]]
    _held: dict[TopicPartition, dict[int, _Held]] = field(default_factory=dict)
    #: Per partition, the committed offset as this process last knew it: read after its
    #: producer fenced the previous owner, then moved by each of its own commits.
    _known: dict[TopicPartition, int | None] = field(default_factory=dict)

    def start(self, offsets: dict[TopicPartition, int | None]) -> None:
        """Partitions now read from ``offsets``, their committed offsets read after their
        producers were taken."""
        self._known.update(offsets)

    def hold(self, record: ConsumerRecord[bytes, bytes], outputs: list[Output]) -> None:
        """Keep ``record``'s step records until its offset commits."""
        tp = TopicPartition(record.topic, record.partition)
        self._held.setdefault(tp, {})[record.offset] = _Held(record, outputs)

    def hold_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Keep ``record``'s dead letter until its offset commits."""
        tp = TopicPartition(record.topic, record.partition)
        self._held.setdefault(tp, {})[record.offset] = _Held(
            record, [self.dead_letters.letter(record, reason)], reason
        )

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Drop what revoked partitions held: their next owner runs those steps again."""
        for tp in partitions:
            self._held.pop(tp, None)
            self._known.pop(tp, None)

    async def commit(self, tp: TopicPartition, offset: int) -> None:
        """Write the records held below ``offset`` and commit ``offset``, in one transaction.

        A batch the broker refuses outright (not a transient error) is written a step at a
        time, and the step it refuses again has its input dead-lettered instead, so no record
        pins the partition. Raises the transient errors, ``Fenced``, the broker's refusal
        of this principal (a missing ACL, choreo.kafka.security.NOT_ALLOWED) and
        :class:`Overtaken`; nothing else is dropped from what is held until its transaction
        commits.
        """
        held = self._held.get(tp, {})
        ready = sorted(o for o in held if o < offset)
        try:
            await self._run(tp, [out for o in ready for out in held[o].outputs], offset)
        except KafkaError as exc:
            if transient(exc) or isinstance(exc, NOT_ALLOWED):
                raise  # a missing ACL refuses every step: exit saying so, the steps wait
            log.warning(
                "step records refused as a batch; writing them one by one",
                extra={
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            await self._one_by_one(tp, held, ready)
            return
        self._done(held, ready)

    async def _one_by_one(
        self, tp: TopicPartition, held: dict[int, _Held], ready: list[int]
    ) -> None:
        for o in ready:
            try:
                await self._run(tp, held[o].outputs, o + 1)
            except KafkaError as exc:
                if transient(exc) or isinstance(exc, NOT_ALLOWED):
                    raise
                reason = f"the broker refused this step's records: {type(exc).__name__}: {exc}"
                held[o] = _Held(
                    held[o].record, [self.dead_letters.letter(held[o].record, reason)], reason
                )
                await self._run(tp, held[o].outputs, o + 1)
            self._done(held, [o])  # committed: a later failure must not write it again

    async def _run(self, tp: TopicPartition, outputs: list[Output], offset: int) -> None:
        """One transaction of ``outputs`` and ``offset`` on ``tp``'s producer, taken again
        first if a failed transaction dropped it."""
        await self._take(tp)
        await self.transactions.run(unit_of(tp), sends_of(outputs), {tp: offset})
        self._known[tp] = offset

    async def _take(self, tp: TopicPartition) -> None:
        """Hold ``tp``'s producer; one taken again must find the committed offset unchanged,
        else what is held of ``tp`` is dropped and :class:`Overtaken` raised."""
        unit = unit_of(tp)
        if unit in self.transactions.owned():
            return
        await self.transactions.take(unit)  # fences any other owner, settles our last commit
        try:
            committed = (await self.committed([tp]))[tp]
        except BaseException:
            await self.transactions.release([unit])  # not written on unchecked: taken again
            raise
        if committed != self._known.get(tp):
            self._held.pop(tp, None)
            self._known[tp] = committed
            raise Overtaken(tp, committed)

    def _done(self, held: dict[int, _Held], ready: list[int]) -> None:
        for o in ready:
            done = held.pop(o)
            if done.letter is not None:
                self.dead_letters.noted(done.record, done.letter)
