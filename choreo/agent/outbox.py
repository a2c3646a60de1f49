"""An agent's step records held until they commit with their input offsets, in one transaction.

On a broker with transactions (choreo.kafka.transactions) a finished step's records are not
produced at once: they wait here until every earlier record of their partition has finished
too, and then the records of that finished prefix and the offset past it are written in one
transaction on the partition's own producer. A step killed mid-way, a transaction aborted or a
process fenced thus leaves no record a ``read_committed`` reader sees, and a step whose
records are visible is never run again.
"""

from __future__ import annotations

import logging
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
    """Finished steps' records per input partition and offset, until they commit."""

    transactions: Transactions
    dead_letters: DeadLetters
    _held: dict[TopicPartition, dict[int, _Held]] = field(default_factory=dict)

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

    async def commit(self, tp: TopicPartition, offset: int) -> None:
        """Write the records held below ``offset`` and commit ``offset``, in one transaction.

        A batch the broker refuses outright (not a transient error) is written a step at a
        time, and the step it refuses again has its input dead-lettered instead, so no record
        pins the partition. Raises the transient errors, ``Fenced`` and the broker's refusal
        of this principal (a missing ACL, choreo.kafka.security.NOT_ALLOWED); nothing is dropped
        from what is held until its transaction commits.
        """
        held = self._held.get(tp, {})
        ready = sorted(o for o in held if o < offset)
        try:
            await self.transactions.run(
                unit_of(tp), sends_of([out for o in ready for out in held[o].outputs]), {tp: offset}
            )
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
        self._done(held, ready)

    async def _one_by_one(
        self, tp: TopicPartition, held: dict[int, _Held], ready: list[int]
    ) -> None:
        for o in ready:
            try:
                await self.transactions.run(unit_of(tp), sends_of(held[o].outputs), {tp: o + 1})
            except KafkaError as exc:
                if transient(exc) or isinstance(exc, NOT_ALLOWED):
                    raise
                reason = f"the broker refused this step's records: {type(exc).__name__}: {exc}"
                held[o] = _Held(
                    held[o].record, [self.dead_letters.letter(held[o].record, reason)], reason
                )
                await self.transactions.run(unit_of(tp), sends_of(held[o].outputs), {tp: o + 1})

    def _done(self, held: dict[int, _Held], ready: list[int]) -> None:
        for o in ready:
            done = held.pop(o)
            if done.letter is not None:
                self.dead_letters.noted(done.record, done.letter)
