"""The supervisor's plan and the router's choice as pure functions: no broker, no model."""

from __future__ import annotations

import pytest
import yaml

from choreo.router import classify
from choreo.spec.mesh import Route, SpecError, load_mesh, parse_mesh
from choreo.spec.supervisor import PlanSpec
from choreo.supervisor import judge
from choreo.supervisor.plan import Progress, Verdict, advance, returned
from tests.conftest import EXAMPLES

DIAMOND = PlanSpec.model_validate(
    {
        "output": "brief",
        "arrivals": "done",
        "stages": [
            {"name": "history", "assign": "h.req", "returns": "h.done", "result": "h"},
            {
                "name": "economics",
                "assign": "e.req",
                "returns": "e.done",
                "result": "e",
                "feedback": "e_review",
                "max_attempts": 2,
            },
            {
                "name": "brief",
                "assign": "b.req",
                "returns": "b.done",
                "result": "brief",
                "after": ["history", "economics"],
            },
        ],
    }
)


def test_a_plan_starts_with_every_stage_that_waits_for_nothing_in_parallel() -> None:
    assert returned(DIAMOND, Progress(), "task.received", []) == []
    start = advance(DIAMOND, Progress(), [], arrivals=0)
    assert start.assign == ["history", "economics"]
    assert start.progress.attempts == {"history": 1, "economics": 1}


def test_only_the_answer_that_completes_a_round_acts() -> None:
    out = advance(DIAMOND, Progress(), [], arrivals=0).progress
    assert returned(DIAMOND, out, "h.done", ["history"]) is None  # economics still out
    assert returned(DIAMOND, out, "e.done", ["history", "economics"]) == ["history", "economics"]


def test_a_failed_stage_is_assigned_again_with_the_reasons_then_the_next_stage() -> None:
    out = advance(DIAMOND, Progress(), [], arrivals=0).progress
    retry = advance(
        DIAMOND,
        out,
        [Verdict("history", 1, True, "ok"), Verdict("economics", 1, False, "no numbers")],
        arrivals=2,
    )
    assert retry.assign == ["economics"] and retry.feedback == {"e_review": "no numbers"}
    assert retry.progress.start == 2 and retry.progress.attempts["economics"] == 2
    # history's late duplicate answer is not part of the new round
    assert returned(DIAMOND, retry.progress, "h.done", ["history", "economics", "history"]) is None
    assert returned(DIAMOND, retry.progress, "e.done", ["history", "economics", "economics"]) == [
        "economics"
    ]
    brief = advance(DIAMOND, retry.progress, [Verdict("economics", 2, True, "ok")], arrivals=3)
    assert brief.assign == ["brief"]
    done = advance(DIAMOND, brief.progress, [Verdict("brief", 1, True, "ok")], arrivals=4)
    assert done.finish and not done.assign and done.fail is None


def test_a_stage_out_of_attempts_fails_the_trace_with_the_judges_reasons() -> None:
    out = advance(DIAMOND, Progress(), [], arrivals=0).progress
    out = advance(
        DIAMOND,
        out,
        [Verdict("history", 1, True, "ok"), Verdict("economics", 1, False, "no numbers")],
        2,
    ).progress
    last = advance(DIAMOND, out, [Verdict("economics", 2, False, "still no numbers")], 3)
    assert last.fail is not None and "still no numbers" in last.fail and not last.assign


def test_the_judge_answer_reads_as_pass_or_fail_and_anything_else_fails() -> None:
    assert judge.parse("s", 1, "PASS: concise").passed
    verdict = judge.parse("s", 1, "**FAIL** - too long")
    assert not verdict.passed and verdict.reasons == "too long"
    assert not judge.parse("s", 1, "Looks fine to me").passed


def test_a_parallel_plan_must_name_its_arrivals_field() -> None:
    data = DIAMOND.model_dump()
    data["arrivals"] = None
    with pytest.raises(ValueError, match="arrivals"):
        PlanSpec.model_validate(data)


def test_router_rules_and_labels() -> None:
    router = load_mesh(EXAMPLES / "triage" / "mesh.yaml").agent("triage")

    def emits(route: Route | None) -> str | None:
        return route.emit if route else None

    assert emits(classify.by_rules(router, "the export fails with an error")) == "bug.reported"
    assert emits(classify.by_rules(router, "please refund me")) == "billing.question"
    assert emits(classify.by_rules(router, "what are your hours?")) == "general.question"
    assert emits(classify.by_label(router, "Billing.")) == "billing.question"
    assert classify.by_label(router, "unsure") is None
    assert classify.by_label(router, "") is None


def test_an_assignment_nobody_works_on_is_refused_at_load_time() -> None:
    path = EXAMPLES / "supervised-writing" / "mesh.yaml"
    data = yaml.safe_load(path.read_text())
    data["agents"] = [a for a in data["agents"] if a["name"] != "editor"]
    with pytest.raises(SpecError, match=r"edit\.(requested|done)"):
        parse_mesh(data, str(path))
