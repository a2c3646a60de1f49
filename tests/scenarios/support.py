"""The scenario mesh's runs: one task per watchdog scenario, and what became of each."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from choreo.bench.scenarios import HEALTHY, Scenario
from choreo.bench.watchdog import Observation, caught_up, observe
from tests.commands import CHOREO
from tests.conftest import RunningMesh, wait_until

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


def run_scenarios(mesh: RunningMesh, scenarios: Iterable[Scenario]) -> Scenarios:
    """Submit the healthy task, wait until the watchdog has read it, then submit one task per
    scenario, all at once."""
    healthy = mesh.submit(HEALTHY)
    assert mesh.result(healthy).status == "completed"
    # Loops started before the watchdog reads would run into the agents' hop budget instead.
    wait_until(
        lambda: mesh.client.run(caught_up, healthy),
        WATCHDOG_START_S,
        interval=1.0,
        message="the watchdog to read",
    )
    traces = {s.name: mesh.submit(s.input, budget=s.budget) for s in scenarios}
    return Scenarios(mesh, healthy, traces)


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
