"""The scenario mesh's catalogue: one task per watchdog scenario, shared by ``choreo bench
watchdog --live`` (choreo.bench.watchdog) and tests/scenarios.

Light to import (no Kafka): ``choreo bench --help`` shows the mesh's default path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from choreo.schemas import Budget

SCENARIO_MESH = Path(__file__).resolve().parents[2] / "tests" / "scenarios" / "mesh.yaml"
#: A healthy task of the scenario mesh: once the watchdog has read its hops, it is reading.
HEALTHY = "echo: are you there?"


@dataclass(frozen=True)
class Scenario:
    name: str
    input: str
    budget: Budget | None = None


#: One task per scenario of the scenario mesh; its input's first word picks the scenario.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("ping-pong", "ping-pong: keep the rally going"),
    Scenario("never-approves", "review: one line on event streams"),
    Scenario("same-code", "code: a function that sums a list"),
    Scenario("budget", "spend: notes on event streams", Budget(max_tokens=300)),
    Scenario("persona-fix", "fix: the input that will not parse"),
    Scenario("checklist", "checklist: the pre-drive checks"),
    Scenario("flip", "flip: the cache races under load"),
)
