"""Commits advance only over a finished prefix, whatever order records finish in."""

from __future__ import annotations

from aiokafka import TopicPartition

from choreo.kafka.offsets import OffsetTracker

A = TopicPartition("t", 0)
B = TopicPartition("t", 1)


def _tracker(tp: TopicPartition, *offsets: int) -> OffsetTracker:
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.started(tp, offset)
    return tracker


def test_commit_stops_at_the_lowest_in_flight_offset() -> None:
    tracker = _tracker(A, 10, 11, 12)
    tracker.done(A, 11)
    tracker.done(A, 12)
    assert tracker.committable() == {}  # 10 is still running: never commit past it
    tracker.done(A, 10)
    assert tracker.committable() == {A: 13}


def test_out_of_order_completion_commits_once_the_gap_closes() -> None:
    tracker = _tracker(A, 10, 11, 12)
    tracker.done(A, 12)
    tracker.mark_committed(tracker.committable())
    tracker.done(A, 10)
    assert tracker.committable() == {A: 11}
    tracker.mark_committed({A: 11})
    tracker.done(A, 11)
    assert tracker.committable() == {A: 13}  # all done: one past the last started


def test_partitions_are_independent() -> None:
    tracker = _tracker(A, 0, 1)
    tracker.started(B, 5)
    tracker.done(A, 0)
    tracker.done(A, 1)
    assert tracker.committable() == {A: 2}  # nothing of B has finished
    assert tracker.in_flight() == 1
    assert tracker.in_flight({A}) == 0
    assert tracker.in_flight({B}) == 1


def test_committable_returns_only_offsets_that_moved() -> None:
    tracker = _tracker(A, 0)
    tracker.started(B, 0)
    tracker.done(A, 0)
    tracker.done(B, 0)
    tracker.mark_committed(tracker.committable())
    assert tracker.committable() == {}
    tracker.started(A, 1)
    tracker.done(A, 1)
    assert tracker.committable() == {A: 2}


def test_forget_drops_a_revoked_partition() -> None:
    tracker = _tracker(A, 0, 1)
    tracker.started(B, 7)
    tracker.done(A, 0)
    tracker.mark_committed(tracker.committable())
    tracker.forget([A])
    assert tracker.committable() == {}  # B has not moved; A is no longer ours
    assert tracker.in_flight() == 1
    # Reassigned later: the new owner's offsets start over from the group's commit.
    tracker.started(A, 1)
    tracker.done(A, 1)
    assert tracker.committable() == {A: 2}


def test_a_record_only_started_is_never_committed_over() -> None:
    # On Apache Kafka offset 13 is the marker of the transaction that wrote 12: committing 14
    # when 14 starts would be an empty transaction, delaying the step's own (its markers).
    tracker = _tracker(A, 12)
    tracker.done(A, 12)
    tracker.mark_committed(tracker.committable())
    tracker.started(A, 14)
    assert tracker.committable() == {}
    tracker.done(A, 14)
    assert tracker.committable() == {A: 15}
