"""The watchdog's scenarios end to end: the scenario mesh (mesh.yaml) with its watchdog on a
real broker, one task per scenario, all running at once.

One watchdog serves every scenario. The tests read what happened back from the log (verdicts,
escalations, hop records, terminal records). The last test stops the watchdog, so it must stay
last in this module. (Escalations resolved through the command line:
tests/processes/test_cli_escalations.py.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from choreo.bench.scenarios import SCENARIOS
from choreo.bench.watchdog import observe
from choreo.kafka.clients import read_topic
from choreo.keeper.replay import compare
from choreo.schemas import Budget
from choreo.schemas.deltas import StateLog
from tests.conftest import RunningMesh
from tests.scenarios.support import MESH, Scenarios, assert_halted_by, run_scenarios

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scenarios(start_mesh: Callable[..., RunningMesh]) -> Iterator[Scenarios]:
    with start_mesh(MESH, watchdog=True) as mesh:
        yield run_scenarios(mesh, SCENARIOS)


def test_ping_pong_without_progress_is_shifted_then_halted(scenarios: Scenarios) -> None:
    seen = scenarios.finished("ping-pong")
    first, second, *_ = seen.verdicts
    assert (first.action, first.agent, first.reason) == ("persona_shift", "pong", "loop.ping_pong")
    assert first.evidence["hop"] == 5  # dispatch, then ping pong ping pong: two rounds
    assert (second.action, second.agent) == ("persona_shift", "ping")
    assert "ping_pong" in {m["rule"] for m in second.evidence["matched"]}
    assert [v.action for v in seen.verdicts] == ["persona_shift", "persona_shift", "halt"]
    assert_halted_by(seen, seen.verdicts[-1].reason)
    assert seen.verdicts[-1].reason in ("loop.ping_pong", "loop.cycle")


def test_an_editor_that_never_approves_is_stuck(scenarios: Scenarios) -> None:
    seen = scenarios.finished("never-approves")
    assert [(v.action, v.agent, v.reason) for v in seen.verdicts] == [
        ("persona_shift", "critic", "loop.stuck"),
        ("halt", "critic", "loop.stuck"),
    ]
    assert seen.verdicts[0].evidence["hop"] == 9  # the critic's fourth identical review
    assert_halted_by(seen, "loop.stuck")


def test_an_engineer_rewriting_the_same_code_is_caught(scenarios: Scenarios) -> None:
    seen = scenarios.finished("same-code")
    shift, halt = seen.verdicts
    assert (shift.action, shift.agent, halt.action) == ("persona_shift", "engineer", "halt")
    # its three near-identical versions (0.97-0.99) are new values, so progress; from its
    # fourth attempt on it writes the first version again and again: stuck at the third repeat
    assert (shift.reason, shift.evidence["hop"]) == ("loop.stuck", 7)
    assert_halted_by(seen, halt.reason)


def test_a_budget_blow_out_is_stopped_before_the_money_is_spent(scenarios: Scenarios) -> None:
    seen = scenarios.finished("budget")
    (result,) = seen.results
    assert result.status == "halted" and "budget.tokens" in (result.reason or "")
    assert result.usage.tokens_in + result.usage.tokens_out <= 300  # never over, exactly
    assert all(v.action == "persona_shift" for v in seen.verdicts)  # the budget halted it
    (escalation,) = seen.escalations
    # refused by the agent (the next prompt does not fit) or by the keeper (nothing left)
    assert escalation.reason == result.reason
    assert escalation.evidence["rule"] in ("agent.refused", "budget.tokens")


def test_the_persona_shift_fixes_a_loop_and_the_trace_completes(scenarios: Scenarios) -> None:
    seen = scenarios.finished("persona-fix")
    (shift,) = seen.verdicts
    assert (shift.action, shift.agent, shift.reason) == ("persona_shift", "fixer", "loop.stuck")
    (result,) = seen.results
    assert result.status == "completed"
    assert result.output.startswith("FIXED")
    assert not seen.escalations
    mesh = scenarios.mesh
    snapshot = mesh.snapshot(seen.trace_id)
    persona = snapshot.personas["fixer"]
    assert persona.temperature == mesh.spec.watchdog.shift_temperature
    assert persona.system_prompt == mesh.spec.watchdog.shift_system_prompt


def test_replaying_the_outbox_rebuilds_every_scenario_with_its_personas(
    scenarios: Scenarios,
) -> None:
    for name in scenarios.traces:
        scenarios.finished(name)
    mesh = scenarios.mesh
    states = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.state))
    live = StateLog.read(states).latest()
    outbox = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.outbox))
    comparisons = {c.trace_id: c for c in compare(mesh.spec, mesh.topics, outbox, live)}
    for trace_id in scenarios.traces.values():
        assert comparisons[trace_id].differences == ()
    assert comparisons[scenarios.traces["persona-fix"]].rebuilt.personas  # type: ignore[union-attr]


def test_a_healthy_trace_of_the_scenario_mesh_gets_no_verdict(scenarios: Scenarios) -> None:
    seen = scenarios.settled(scenarios.healthy)
    assert seen.verdicts == [] and seen.escalations == []


def test_a_checklist_of_near_identical_replies_is_left_alone(scenarios: Scenarios) -> None:
    seen = scenarios.finished("checklist")
    (result,) = seen.results
    assert result.status == "completed" and result.output.startswith("Checked item 10:")
    assert len(seen.hops) == 11  # dispatch, then ten items
    assert seen.verdicts == [] and seen.escalations == []


def test_a_fix_flipping_beside_a_counter_is_caught_by_the_revisit_rule(
    scenarios: Scenarios,
) -> None:
    seen = scenarios.finished("flip")
    shift, *_, halt = seen.verdicts
    assert (shift.action, shift.agent, shift.reason) == ("persona_shift", "flipper", "loop.revisit")
    assert shift.evidence["hop"] == 5  # dispatch, A, B, A, B: the state went back twice
    assert_halted_by(seen, halt.reason)


def test_with_the_watchdog_stopped_the_agents_own_budget_halts_the_loop(
    scenarios: Scenarios,
) -> None:
    mesh = scenarios.mesh
    for name in scenarios.traces:  # every watched scenario is over before the watchdog goes
        scenarios.finished(name)
    assert mesh.failed() == []  # the watchdog ran until now
    mesh.stop_service("watchdog")  # as SIGTERM stops its process: cleanly, or this raises

    ping_pong = next(s for s in SCENARIOS if s.name == "ping-pong")
    trace_id = mesh.submit(ping_pong.input, budget=Budget(max_hops=8))
    result = mesh.result(trace_id)
    assert (result.status, result.reason) == (
        "halted",
        "budget.hops: hops used 8, in_flight 0, next 1, limit 8",
    )
    assert result.usage.hops == 8  # the keeper did not forward a ninth step
    seen = mesh.client.run(observe, trace_id)
    assert seen.verdicts == [] and len(seen.results) == 1
    (escalation,) = seen.escalations  # a budget halt is handed to a human like any other
    assert escalation.evidence["rule"] == "budget.hops"

    spend = next(s for s in SCENARIOS if s.name == "budget")
    tiny_result = mesh.result(mesh.submit(spend.input, budget=Budget(max_tokens=10)))
    assert tiny_result.status == "halted" and "budget.tokens" in (tiny_result.reason or "")
    assert tiny_result.usage.tokens_in + tiny_result.usage.tokens_out <= 10

    results = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.results))
    ids = [r.key for r in results]
    assert len(ids) == len(set(ids)), "a trace id got a second terminal record"
