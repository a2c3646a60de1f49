"""The watchdog's scenarios end to end: the scenario mesh (mesh.yaml) with its watchdog, every
service a real process on a real broker, one task per scenario, all running at once.

One watchdog serves every scenario: its group join is the slow part of starting it. The tests
read what happened back from the log (verdicts, escalations, hop records, terminal records).
The last test stops the watchdog, so it must stay last in this module.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from choreo.bench.scenarios import HEALTHY, SCENARIOS
from choreo.bench.watchdog import Observation, caught_up, observe
from choreo.kafka.clients import read_topic
from choreo.keeper.replay import compare, latest
from choreo.schemas import Budget, Escalation, Snapshot, decode
from tests.commands import CHOREO
from tests.conftest import RunningMesh, wait_until

pytestmark = pytest.mark.integration

MESH = Path(__file__).parent / "mesh.yaml"
WATCHDOG_START_S = 150.0


@dataclass
class Scenarios:
    mesh: RunningMesh
    healthy: str
    traces: dict[str, str]

    def finished(self, name: str) -> Observation:
        """The scenario's trace once it has ended and the watchdog has read all of it."""
        return self.settled(self.traces[name])

    def settled(self, trace_id: str) -> Observation:
        self.mesh.result(trace_id, timeout=120.0)
        wait_until(
            lambda: self.mesh.client.run(caught_up, trace_id),
            60.0,
            interval=0.5,
            message=f"the watchdog to read trace {trace_id}",
        )
        return self.mesh.client.run(observe, trace_id)


@pytest.fixture(scope="module")
def scenarios(start_mesh_processes: Callable[..., RunningMesh]) -> Iterator[Scenarios]:
    mesh = start_mesh_processes(MESH, watchdog=True)
    healthy = mesh.submit(HEALTHY)
    assert mesh.result(healthy).status == "completed"
    # Loops started before the watchdog reads would run into the agents' hop budget instead.
    wait_until(
        lambda: mesh.client.run(caught_up, healthy),
        WATCHDOG_START_S,
        interval=1.0,
        message="the watchdog to join and read",
    )
    traces = {s.name: mesh.submit(s.input, budget=s.budget) for s in SCENARIOS}
    yield Scenarios(mesh, healthy, traces)
    mesh.stop()


def cli(mesh: RunningMesh, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**mesh.env(), "COLUMNS": "250"}  # wide enough that rich never shortens an id
    return subprocess.run([*CHOREO, *args], env=env, capture_output=True, text=True, timeout=120)


def assert_halted_by(seen: Observation, halt_reason: str) -> None:
    """Exactly one terminal record, ``halted`` for the halt verdict's reason, exactly one
    escalation (the keeper's, by trace id), no step folded after it, and the halt not counted
    as a step."""
    halt = seen.verdicts[-1]
    assert halt.action == "halt" and halt.reason == halt_reason
    (result,) = seen.results
    assert (result.status, result.reason) == ("halted", halt_reason)
    (escalation,) = seen.escalations
    assert (escalation.status, escalation.reason) == ("open", halt_reason)
    assert escalation.evidence["verdict_id"] == halt.verdict_id
    assert all(h.created_at <= result.finished_at for h in seen.hops)
    assert result.usage.hops == len(seen.hops) and "watchdog" not in result.usage.by_agent


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
    live = latest(decode(r.value, Snapshot) for r in states if r.value)
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


@pytest.mark.timeout(600)  # eight CLI processes and a continuation trace, on 2 busy cores
def test_escalations_are_listed_resumed_and_closed_through_the_cli(scenarios: Scenarios) -> None:
    mesh = scenarios.mesh
    code, review = (scenarios.finished(n) for n in ("same-code", "never-approves"))
    listed = cli(mesh, "escalations")
    assert listed.returncode == 0, listed.stderr
    for seen in (code, review):
        assert seen.escalations[0].escalation_id in listed.stdout
        assert seen.trace_id in listed.stdout

    guidance = "Use the built-in sum; stop iterating by index."
    resumed = cli(
        mesh, "escalations", "resolve", code.escalations[0].escalation_id, "--resume", guidance
    )
    assert resumed.returncode == 0, resumed.stderr
    closed = cli(mesh, "escalations", "resolve", review.escalations[0].escalation_id, "--close")
    assert closed.returncode == 0, closed.stderr
    again = cli(mesh, "escalations", "resolve", review.escalations[0].escalation_id, "--close")
    assert again.returncode == 1 and "already closed" in again.stderr
    twice = cli(
        mesh, "escalations", "resolve", code.escalations[0].escalation_id, "--resume", guidance
    )
    assert twice.returncode == 1 and "already resumed" in twice.stderr

    escalations = {
        e.escalation_id: e
        for e in mesh.client.read(mesh.topics.escalations, code.trace_id, Escalation)
    }
    updated = escalations[code.escalations[0].escalation_id]
    assert (updated.status, updated.guidance) == ("resumed", guidance)
    continuation = updated.continuation_trace_id
    assert continuation is not None and continuation in resumed.stdout

    follow = scenarios.settled(continuation)
    (result,) = follow.results
    assert (result.status, result.parent_trace_id) == ("completed", code.trace_id)
    assert result.output.startswith("DONE")
    assert follow.verdicts == []  # a fresh budget and a fresh watch
    first = mesh.client.read(mesh.topics.state, continuation, Snapshot)[0]
    assert first.fields["guidance"] == guidance
    assert first.fields["attempts"] == code.hops[-1].totals.hops - 1  # the halted state

    listed = cli(mesh, "escalations")
    assert "resumed" in listed.stdout and "closed" in listed.stdout
    for seen in (code, review):  # neither leaves events flowing
        after = scenarios.settled(seen.trace_id)
        assert len(after.results) == 1 and after.hops == seen.hops


def test_with_the_watchdog_stopped_the_agents_own_budget_halts_the_loop(
    scenarios: Scenarios,
) -> None:
    mesh = scenarios.mesh
    for name in scenarios.traces:  # every watched scenario is over before the watchdog goes
        scenarios.finished(name)
    watchdog = mesh.group.find("watchdog").process
    assert watchdog is not None and watchdog.poll() is None
    watchdog.terminate()
    assert watchdog.wait(timeout=60) == 0

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
