"""The watchdog's labelled corpus meets its targets: every loop caught, no healthy flow halted
or shifted, no budget overspent, the first verdict within two steps of its evidence.

Each case runs its whole mesh in this process (choreo/bench/corpus.py): the keeper's
transitions, the agents' steps with real HTTP calls to scripted model servers, the watchdog's
policy. tests/scenarios/test_scenarios.py runs a subset as services on a broker.
"""

from __future__ import annotations

from collections import Counter

import pytest

from choreo.bench.corpus import Outcome, load_cases, run_corpus
from choreo.bench.watchdog import calibration, corpus_report


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    return run_corpus()


def test_the_corpus_covers_at_least_fifteen_loops_and_fifteen_healthy_flows() -> None:
    cases = load_cases()
    labels = Counter(c.label for c in cases)
    assert labels["loop"] >= 15 and labels["healthy"] >= 15
    shapes = {c.shape for c in cases}
    assert {
        "two-agent-cycle",
        "three-agent-cycle",
        "flip-with-counter",
        "near-identical-short",
        "near-identical-long",
        "loop-under-fan-out",
        "token-blow-out",
        "cost-blow-out",
        "hop-blow-out-under-fan-out",
        "silent-endpoint",
        "budget-without-watchdog",
        "checklist",
        "converging-revise",
        "fan-out-similar",
        "long-pipeline",
    } <= shapes


def test_every_loop_is_caught_and_no_healthy_flow_is_halted_or_shifted(
    outcomes: list[Outcome],
) -> None:
    missed = [o.case.name for o in outcomes if o.case.label == "loop" and not o.caught]
    halted = [o.case.name for o in outcomes if o.false_halt]
    shifted = [o.case.name for o in outcomes if o.false_shift]
    assert (missed, halted, shifted) == ([], [], [])


def test_no_budget_is_overspent_by_anything(outcomes: list[Outcome]) -> None:
    over = {o.case.name: o.overspend for o in outcomes if any(o.overspend.values())}
    assert over == {}


def test_the_first_verdict_lands_within_two_steps_of_its_evidence(outcomes: list[Outcome]) -> None:
    late = {
        o.case.name: o.steps_to_verdict
        for o in outcomes
        if o.steps_to_verdict is not None and o.steps_to_verdict > 2
    }
    assert late == {}
    assert any(o.steps_to_verdict is not None for o in outcomes)


def test_each_halted_trace_has_one_terminal_record_and_one_escalation(
    outcomes: list[Outcome],
) -> None:
    assert [(o.case.name, o.notes) for o in outcomes if o.notes] == []
    assert [o.case.name for o in outcomes if not o.escalations_right] == []
    assert any(o.status == "halted" for o in outcomes)


def test_a_halt_after_a_join_resumes_into_a_continuation_that_completes(
    outcomes: list[Outcome],
) -> None:
    resumed = [o for o in outcomes if o.case.resume is not None]
    assert resumed and all(o.continuation == "completed" for o in resumed)


def test_the_report_states_the_targets_met(outcomes: list[Outcome]) -> None:
    assert calibration(outcomes).on_target
    report = corpus_report(outcomes, "choreo bench watchdog")
    assert f"**{len([o for o in outcomes if o.case.label == 'loop'])} of" in report
