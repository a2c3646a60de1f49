"""Which offsets are safe to commit when records of a partition finish out of order.

An agent works on several records at once (model calls are slow), but Kafka commits one
offset per partition. The safe offset is just past the longest run of finished records from
the front: committing further would skip a record still in flight if the process died now.
"""

from __future__ import annotations

from aiokafka import TopicPartition


class OffsetTracker:
    """Per partition: the records in flight and those finished since the last commit.
    Offsets are Kafka's (a commit names the next one to read)."""

    def __init__(self) -> None:
        self._in_flight: dict[TopicPartition, set[int]] = {}
        #: Finished records the last commit is not past yet.
        self._finished: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self._in_flight.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: TopicPartition, offset: int) -> None:
        self._in_flight[tp].discard(offset)
        self._finished.setdefault(tp, set()).add(offset)

    def in_flight(self, partitions: set[TopicPartition] | None = None) -> int:
        return sum(
            len(v) for tp, v in self._in_flight.items() if partitions is None or tp in partitions
        )

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition, the offset to commit now: the lowest in flight (else one past the
        last started), where that moves the commit past a finished record.

        A commit that passes no finished record is not made: on Apache Kafka the gap before a
        record just started is often a transaction marker, and committing over it alone
        would cost an empty transaction, whose markers then delay the step's own.
        """
        ready: dict[TopicPartition, int] = {}
        for tp, upto in self._next.items():
            pending = self._in_flight.get(tp)
            offset = min(pending) if pending else upto
            finished = self._finished.get(tp)
            if finished and min(finished) < offset:
                ready[tp] = offset
        return ready

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._finished[tp] = {o for o in self._finished.get(tp, ()) if o >= offset}

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Drop revoked partitions: their next owner starts from the committed offset."""
        for tp in partitions:
            self._in_flight.pop(tp, None)
            self._finished.pop(tp, None)
            self._next.pop(tp, None)
