"""Which offsets are safe to commit when records of a partition finish out of order.

An agent works on several records at once (model calls are slow), but Kafka commits one
offset per partition. The safe offset is just past the longest run of finished records from
the front: committing further would skip a record still in flight if the process died now.
"""

from __future__ import annotations

from aiokafka import TopicPartition


class OffsetTracker:
    def __init__(self) -> None:
        self._in_flight: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self._in_flight.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def done(self, tp: TopicPartition, offset: int) -> None:
        self._in_flight[tp].discard(offset)

    def in_flight(self, partitions: set[TopicPartition] | None = None) -> int:
        return sum(len(v) for tp, v in self._in_flight.items()
                   if partitions is None or tp in partitions)

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets past the last committed ones: the lowest in flight, or one past the last."""
        ready: dict[TopicPartition, int] = {}
        for tp, upto in self._next.items():
            pending = self._in_flight.get(tp)
            offset = min(pending) if pending else upto
            if offset > self._committed.get(tp, -1):
                ready[tp] = offset
        return ready

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Drop revoked partitions: their next owner starts from the committed offset."""
        for tp in partitions:
            self._in_flight.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
