"""The record limit's arithmetic, and the outage policy's back-off and give-up point."""

from __future__ import annotations

import pytest
from aiokafka.errors import RequestTimedOutError
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.kafka.clients import BrokerOutage, Outage, transient
from choreo.kafka.limits import RecordLimit, RecordTooLarge
from choreo.schemas import DeadLetter, decode, encode


@settings(max_examples=60, deadline=None)
@given(
    original=st.binary(max_size=40_000),
    reason=st.text(max_size=2_000),
    limit=st.integers(min_value=4_096, max_value=30_000),
)
def test_a_dead_letter_always_fits_and_keeps_a_prefix_of_the_original(
    original: bytes, reason: str, limit: int
) -> None:
    letter = DeadLetter(
        topic="t",
        partition=0,
        offset=1,
        key="k",
        reason=reason,
        consumer="keeper",
        original=original,
    )
    data = RecordLimit(limit).dead_letter(letter)
    assert len(data) <= limit
    back = decode(data, DeadLetter)
    assert original.startswith(back.original)
    assert back.reason.startswith(reason)
    if len(encode(letter)) <= limit:
        assert back.original == original  # cut only when it would not fit


def test_check_names_the_record_its_size_and_the_limit() -> None:
    with pytest.raises(
        RecordTooLarge, match="the snapshot would be 11 bytes, over the record limit of 10 bytes"
    ):
        RecordLimit(10).check("the snapshot", b"x" * 11)


def test_an_outage_backs_off_then_gives_up_saying_why() -> None:
    error = RequestTimedOutError()
    assert transient(error)
    outage = Outage(3600, "keeper")
    assert [outage.failed(error) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    outage.ok()
    assert outage.failed(error) == 0.5  # a new outage starts over
    with pytest.raises(
        BrokerOutage,
        match=r"keeper: the broker has not answered .*"
        r"CHOREO_BROKER_OUTAGE_S.*RequestTimedOutError",
    ):
        Outage(0.0, "keeper").failed(error)
