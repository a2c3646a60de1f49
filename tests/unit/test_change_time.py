"""A trace's times follow its log order, whatever the producers' clocks stamped.

Agents and the keeper each stamp the outbox records they send with their own send time, so a
halt the keeper logged can stand after a step whose stamp is later. The trace must still end
no earlier than every change before it: no hop record dated after the trace's end.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from choreo.keeper.batch import Batch
from choreo.keeper.machine import Keeper
from choreo.schemas import Envelope, HopRecord, TerminalResult, encode
from choreo.schemas.records import HALT
from tests.unit.support import consumed
from tests.unit.test_keeper import TOPICS, Harness, sent, step

T0 = 1_700_000_000_000
#: Stamps of the outbox records, ms after the admission: any order, including backwards.
STAMPS = st.integers(min_value=-5_000, max_value=5_000)


def _apply(keeper: Keeper, offsets: itertools.count[int], value: Envelope, at_ms: int) -> Batch:
    batch = Batch()
    record = consumed(
        TOPICS.outbox, next(offsets), encode(value), key=value.trace_id, timestamp_ms=T0 + at_ms
    )
    assert keeper.apply(record, batch) is None
    return batch


@given(steps=st.lists(STAMPS, min_size=1, max_size=6), halt=STAMPS)
def test_no_change_is_dated_before_the_one_it_follows(steps: list[int], halt: int) -> None:
    harness = Harness()
    cause = harness.admitted()
    keeper, offsets = harness.keeper, itertools.count(1_000)
    hops: list[HopRecord] = []
    times = [keeper.traces["t1"].updated_at]
    for index, stamp in enumerate(steps):
        writer = index % 2 == 0
        batch = _apply(
            keeper,
            offsets,
            step("writer" if writer else "editor", cause, "a draft" if writer else "REVISE: again"),
            stamp,
        )
        hops += sent(batch, TOPICS.hops, HopRecord)
        times.append(keeper.traces["t1"].updated_at)
        cause = sent(
            batch, TOPICS.event("draft.ready" if writer else "revision.requested"), Envelope
        )[0]
    verdict = Envelope(
        event_id="halt-1",
        trace_id="t1",
        type=HALT,
        source="watchdog",
        payload={"reason": "loop.stuck"},
    )
    (result,) = sent(_apply(keeper, offsets, verdict, halt), TOPICS.results, TerminalResult)
    assert times == sorted(times)
    assert len(hops) == len(steps)
    assert all(hop.created_at <= result.finished_at for hop in hops)
    assert result.finished_at >= times[-1]


def test_a_change_in_stamp_order_keeps_its_own_time() -> None:
    harness = Harness()
    cause = harness.admitted()
    admitted = harness.keeper.traces["t1"].updated_at
    batch = _apply(harness.keeper, itertools.count(1_000), step("writer", cause, "a draft"), 60_000)
    (hop,) = sent(batch, TOPICS.hops, HopRecord)
    assert (hop.created_at - admitted).total_seconds() > 50  # the record's own stamp
