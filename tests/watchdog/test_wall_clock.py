"""The wall-clock budget ends a trace one way, whoever sees it pass first (docs/WATCHDOG.md,
"One ending per budget"): a model slower than the trace's budget, with the watchdog on, and
three parts that may notice the deadline (the agent whose call is cut, the keeper's sweep,
the watchdog on the hop record). Before, the sweep's ending was ``failed`` with no
escalation, the watchdog's ``halted``; which one came first decided.

All orders are covered without timing in tests/unit/test_keeper.py; this is the race live.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from choreo.schemas import Escalation
from tests.conftest import RunningMesh
from tests.liveness.support import one_agent_mesh

pytestmark = pytest.mark.integration


def test_a_model_slower_than_the_budget_ends_halted_with_one_escalation(
    start_test_mesh: Callable[..., RunningMesh], tmp_path: Path
) -> None:
    spec = one_agent_mesh(tmp_path, script={"latency_ms": 6000}, tier={"timeout_s": 30})
    spec["budgets"]["max_seconds"] = 3
    mesh = start_test_mesh(spec, base_dir=tmp_path, watchdog=True)
    trace_id = mesh.submit("whole answer, slowly", trace_id="slow-1")
    result = mesh.result(trace_id, timeout=90)
    assert result.status == "halted", result.reason
    assert result.reason is not None and result.reason.startswith("budget.wall_clock")
    assert len(mesh.results(trace_id)) == 1
    escalations = mesh.client.read(mesh.topics.escalations, trace_id, Escalation)
    assert len(escalations) == 1
