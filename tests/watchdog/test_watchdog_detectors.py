"""The watchdog's rules on literal inputs: similarity math, cycles, ping-pong, stuck, budgets."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from choreo.schemas import Budget, Totals
from choreo.watchdog.detectors import (
    Match,
    Step,
    TraceWatch,
    cosine,
    cycle,
    deadline_of,
    dump_watch,
    load_watch,
    meeting_key,
    ngrams,
    over_budget,
    ping_pong,
    stuck,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_ngrams_count_overlapping_grams_and_keep_short_text_whole() -> None:
    assert ngrams("abcab") == {"abc": 1, "bca": 1, "cab": 1}
    assert ngrams("aaaa") == {"aaa": 2}
    assert ngrams("ab") == {"ab": 1}
    assert ngrams("") == {}


def test_cosine_on_known_strings() -> None:
    assert cosine("the same words", "the same words") == 1.0
    assert cosine("abc", "xyz") == 0.0
    assert cosine("", "abc") == 0.0
    # "abcd" -> {abc, bcd}; "abce" -> {abc, bce}: one shared gram of two each.
    assert cosine("abcd", "abce") == pytest.approx(0.5)
    # "aaaa" -> {aaa: 2}; "aaab" -> {aaa: 1, aab: 1}: 2 / (2 * sqrt(2)).
    assert cosine("aaaa", "aaab") == pytest.approx(1 / math.sqrt(2))


def test_cosine_separates_a_one_word_edit_from_a_rewrite() -> None:
    draft = "The quick brown fox jumps over the lazy dog near the river bank at dawn."
    assert cosine(draft, draft.replace("dawn", "dusk")) >= 0.9
    assert cosine(draft, "A slow red cat sleeps under a busy tree far from any water.") < 0.3


def test_cycle_needs_same_agent_input_and_state() -> None:
    meetings = {meeting_key("writer", "in1", "s1"): 1}
    found = cycle(meetings, "writer", 3, "in1", "s1")
    assert found is not None
    assert (found.rule, found.agent, found.hops) == ("cycle", "writer", [1, 3])
    assert cycle(meetings, "editor", 3, "in1", "s1") is None
    assert cycle(meetings, "writer", 3, "in2", "s1") is None
    assert cycle(meetings, "writer", 3, "in1", "s2") is None
    assert cycle(meetings, "writer", 1, "in1", "s1") is None  # the same hop is no repeat


def steps(agents: str, hashes: str, start: int = 1) -> list[Step]:
    return [
        Step(start + i, "writer" if a == "w" else "editor", h)
        for i, (a, h) in enumerate(zip(agents, hashes, strict=True))
    ]


def test_ping_pong_after_the_configured_rounds_without_new_state() -> None:
    assert ping_pong(steps("wewew", "ababa"), rounds=3) is None  # 5 hops: not yet 3 rounds
    found = ping_pong(steps("wewewe", "ababab"), rounds=3)
    assert found is not None
    assert found.agent == "editor"
    assert found.hops == [1, 2, 3, 4, 5, 6]
    assert found.details["agents"] == ["writer", "editor"]
    assert ping_pong(steps("wewe", "abab"), rounds=2) is not None


def test_ping_pong_needs_alternation_and_no_progress() -> None:
    assert ping_pong(steps("wewewe", "ababac"), rounds=3) is None  # last hop reached new state
    assert ping_pong(steps("wweewe", "ababab"), rounds=3) is None  # not alternating
    assert ping_pong([Step(i, "writer", "a") for i in range(6)], rounds=3) is None  # one agent


def test_ping_pong_looks_only_at_the_last_rounds() -> None:
    assert ping_pong(steps("wewewewe", "abcdcdcd"), rounds=3) is not None


def test_stuck_needs_the_full_streak() -> None:
    streak = [Match(2, 0.97), Match(3, 0.99)]
    assert stuck("writer", streak, repeats=3, threshold=0.95) is None
    found = stuck("writer", [*streak, Match(4, 1.0)], repeats=3, threshold=0.95)
    assert found is not None
    assert found.hops == [2, 3, 4]
    assert found.details["similarities"] == [0.97, 0.99, 1.0]


def test_budget_limits_are_inclusive_and_going_over_halts() -> None:
    budget = Budget(max_hops=3, max_tokens=100, max_cost=1.0)
    at_limit = Totals(hops=3, tokens_in=60, tokens_out=40, cost=1.0)
    assert over_budget(budget, at_limit, None, T0) is None
    found = over_budget(budget, Totals(hops=4, tokens_in=90, tokens_out=20, cost=0.5), None, T0)
    assert found is not None
    assert found.rule == "budget.hops"
    assert found.details == {"hops": {"used": 4, "limit": 3}, "tokens": {"used": 110, "limit": 100}}
    over_cost = over_budget(budget, Totals(hops=1, cost=1.5), None, T0)
    assert over_cost is not None and over_cost.rule == "budget.cost"
    assert over_budget(Budget(), Totals(hops=10**6, tokens_in=10**9, cost=1e9), None, T0) is None


def test_wall_clock_from_deadline_or_start_plus_seconds() -> None:
    assert deadline_of(Budget(max_seconds=60), T0) == T0 + timedelta(seconds=60)
    assert deadline_of(Budget(max_seconds=60, deadline=T0), T0 + timedelta(hours=1)) == T0
    assert deadline_of(Budget(), T0) is None
    deadline = T0 + timedelta(seconds=60)
    assert over_budget(Budget(), Totals(), deadline, deadline) is None
    late = over_budget(Budget(), Totals(), deadline, deadline + timedelta(seconds=1))
    assert late is not None and late.rule == "budget.wall_clock"


def test_trace_watch_round_trips_through_json() -> None:
    watch = TraceWatch(
        trace_id="t1",
        budget=Budget(max_hops=5),
        admitted_at=T0,
        recent=[Step(1, "writer", "a")],
        meetings={"k": 1},
    )
    assert load_watch(dump_watch(watch)) == watch
