"""A call held by a model outage ends at its trace's deadline, in every kind of agent, and the
agent takes the next task. (Back-pressure seen on the agent process's metrics endpoint:
tests/processes/test_model_outage.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from choreo.schemas import Budget
from tests.conftest import RunningMesh
from tests.liveness.support import one_agent_mesh

pytestmark = pytest.mark.integration


#: The trace deadline of the held-call test, s: long enough for the services to start work.
DEADLINE_S = 8

#: The one agent, as a prompt agent, one with a tool, and user code calling the model.
KINDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "prompt": lambda agent: agent,
    "tools": lambda agent: {**agent, "tools": [{"function": "agents:echo"}]},
    "python": lambda agent: {
        "name": agent["name"],
        "subscribe": agent["subscribe"],
        "kind": "python",
        "handler": "agents:answer",
        "model": agent["model"],
    },
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_call_held_by_an_outage_ends_at_the_trace_deadline(
    kind: str, start_test_mesh: Callable[..., RunningMesh], tmp_path: Path
) -> None:
    """A call whose every attempt fails keeps the tier's circuit open, so it waits for the
    next probe and the agent takes no other work. It must give up at its trace's deadline in
    every kind of agent (a call of the tool loop once waited on), freeing the agent: the next
    task completes. The trace ends ``halted`` by ``budget.wall_clock`` (docs/WATCHDOG.md),
    whoever saw the deadline."""
    spec = one_agent_mesh(
        tmp_path, tier={"max_retries": 1, "circuit_failures": 1, "circuit_cooldown_s": 1}
    )
    spec["budgets"]["max_seconds"] = DEADLINE_S
    spec["python_path"] = [str(Path(__file__).parent)]
    spec["agents"] = [KINDS[kind](spec["agents"][0])]
    mesh = start_test_mesh(spec, base_dir=tmp_path)
    broken = mesh.submit("broken: every attempt answers HTTP 500", trace_id=f"held-{kind}")
    result = mesh.result(broken, timeout=DEADLINE_S + 90)
    assert result.status == "halted", result.reason
    assert result.reason.startswith("budget.wall_clock") and "deadline" in result.reason
    after = mesh.submit(
        "whole task after the outage", trace_id=f"after-{kind}", budget=Budget(max_seconds=120)
    )
    result = mesh.result(after, timeout=100)
    assert result.status == "completed", result.reason
    assert [len(mesh.results(t)) for t in (broken, after)] == [1, 1]
