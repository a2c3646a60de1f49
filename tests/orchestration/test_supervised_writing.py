"""The supervisor topology end to end: the flowchart's order exactly, judged and event-sourced."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from choreo.schemas.records import FINISH
from tests.conftest import EXAMPLES, RunningMesh

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def supervised(start_mesh: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh(EXAMPLES / "supervised-writing" / "mesh.yaml") as mesh:
        yield mesh


def test_supervisor_writer_supervisor_editor_supervisor_then_the_final_output(
    supervised: RunningMesh,
) -> None:
    trace_id = supervised.submit("Why do agents need shared, versioned state?")
    result = supervised.result(trace_id)
    assert result.status == "completed", result.reason
    assert result.output.rstrip().endswith("[final]")

    steps = supervised.hops(trace_id)
    assert [(h.agent, h.type) for h in steps] == [
        ("supervisor", "draft.requested"),
        ("writer", "draft.done"),
        ("supervisor", "edit.requested"),
        ("editor", "edit.done"),
        ("supervisor", FINISH),
    ]
    assert "draft: PASS" in steps[2].output and "edit: PASS" in steps[4].output
    assert steps[0].usage.calls == 0  # assigning needs no model; judging does
    assert steps[2].usage.calls == 1 and steps[4].usage.calls == 1
    assert result.usage.tokens_in == sum(h.usage.tokens_in for h in steps)

    plan = supervised.snapshot(trace_id).fields["plan"]
    assert plan["passed"] == ["draft", "edit"]
    assert [(v["stage"], v["passed"]) for v in plan["verdicts"]] == [
        ("draft", True),
        ("edit", True),
    ]


def test_a_failed_draft_goes_back_to_the_writer_with_the_judges_reasons(
    supervised: RunningMesh,
) -> None:
    trace_id = supervised.submit("[strict] Why do agents need shared, versioned state?")
    result = supervised.result(trace_id)
    assert result.status == "completed", result.reason

    steps = supervised.hops(trace_id)
    assert [h.agent for h in steps] == [
        "supervisor",
        "writer",
        "supervisor",
        "writer",
        "supervisor",
        "editor",
        "supervisor",
    ]
    assert "draft: FAIL (no numbers" in steps[2].output and steps[2].type == "draft.requested"
    assert "[revised]" in steps[3].output
    state = supervised.snapshot(trace_id).fields
    assert state["review"].startswith("no numbers")  # the reasons the writer revised against
    assert state["plan"]["attempts"] == {"draft": 2, "edit": 1}
