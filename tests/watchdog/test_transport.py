"""The watchdog's offset commits on a transactional topic (choreo.watchdog.transport).

Every transaction the keeper commits leaves a marker in each partition it wrote: an offset no
consumer receives, which faust sees as a gap. The offset the watchdog commits must pass every
record it has processed and every marker between them, and never a record it has received but
not processed (at-least-once: a restart reads that record again). A commit may stop short of
markers after the last record processed; the next one passes them.
"""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from choreo.watchdog.transport import Transport

TOPIC = TP("mesh.hops", 0)


def _committed(layout: list[bool], processed: int) -> int | None:
    """The offset faust would commit after receiving the records of ``layout`` (True: a
    record, False: a transaction marker) and processing the first ``processed`` of them."""

    async def run() -> int | None:
        app = faust.App("gaps", broker="kafka://127.0.0.1:1", loop=asyncio.get_running_loop())
        app.transport = Transport(app.conf.broker_consumer, app)
        consumer = app.consumer
        records = [offset for offset, is_record in enumerate(layout) if is_record]
        previous = None
        for offset in records:  # as faust's fetch loop sees them arrive
            if previous is not None and offset - previous > 1:
                await consumer._add_gap(TOPIC, previous + 1, offset)
            previous = offset
        for offset in records[:processed]:
            consumer._acked[TOPIC].append(offset)
            consumer._acked_index[TOPIC].add(offset)
        offset: int | None = consumer._new_offset(TOPIC)
        return offset

    return asyncio.run(run())


@given(
    layout=st.lists(st.booleans(), min_size=1, max_size=60).map(lambda xs: [True, *xs]),
    data=st.data(),
)
def test_the_commit_passes_every_processed_record_and_marker_and_no_other_record(
    layout: list[bool], data: st.DataObject
) -> None:
    records = [offset for offset, is_record in enumerate(layout) if is_record]
    processed = data.draw(st.integers(1, len(records)), label="processed")
    committed = _committed(layout, processed)
    assert committed is not None
    unprocessed = records[processed] if processed < len(records) else records[-1] + 1
    assert records[processed - 1] < committed <= unprocessed


def test_a_transactional_partition_is_committed_to_its_end_in_one_commit() -> None:
    # a record and its transaction's marker, twenty times: the keeper's hops, one a batch
    assert _committed([True, False] * 20, 20) == 39
