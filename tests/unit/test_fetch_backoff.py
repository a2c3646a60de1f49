"""An idle consumer's fetch wait backs off to its ceiling; the first record restores it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from choreo.kafka.clients import FetchBackoff

#: (seconds since the previous poll, whether the poll returned records)
polls = st.lists(st.tuples(st.floats(0, 5), st.booleans()), max_size=60)


@given(polls)
def test_the_wait_stays_between_short_and_idle_and_records_restore_short(
    steps: list[tuple[float, bool]],
) -> None:
    backoff = FetchBackoff(short_ms=10, idle_ms=250, quiet_s=1.0)
    now = 0.0
    backoff.after_poll(True, now)
    for gap, got in steps:
        now += gap
        wait = backoff.after_poll(got, now)
        assert 10 <= wait <= 250
        if got:
            assert wait == 10


def test_a_quiet_spell_reaches_the_ceiling_and_a_short_one_does_not() -> None:
    backoff = FetchBackoff(short_ms=10, idle_ms=250, quiet_s=1.0)
    backoff.after_poll(True, 0.0)
    assert [backoff.after_poll(False, t / 5) for t in range(1, 5)] == [10] * 4  # < 1 s quiet
    waits = [backoff.after_poll(False, 1 + t / 5) for t in range(7)]
    assert waits == [20, 40, 80, 160, 250, 250, 250]
    assert backoff.after_poll(True, 3.0) == 10
