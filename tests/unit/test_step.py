"""One agent step without Kafka: prompt, budget check, route choice, delta, outbox record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from choreo.agent.step import build_delta, choose_route, outcome, over_budget, render_messages
from choreo.schemas import Budget, Usage
from choreo.schemas.records import FAIL, FINISH, STEP_FAILED
from choreo.spec.mesh import AgentSpec, Route, load_mesh
from tests.unit.support import WRITER_EDITOR, event

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _agent(**overrides: Any) -> AgentSpec:
    fields: dict[str, Any] = {
        "name": "reviewer",
        "subscribe": ["draft.ready"],
        "persona": "You review drafts.",
        "model": "small",
        "routes": [{"emit": "review.done"}],
    }
    return AgentSpec.model_validate({**fields, **overrides})


# -- render_messages -----------------------------------------------------------------------


def test_persona_is_the_system_message() -> None:
    messages = render_messages(_agent(), event(state={"input": "hello"}))
    assert messages[0] == {"role": "system", "content": "You review drafts."}
    assert [m["role"] for m in messages] == ["system", "user"]


def test_system_prompt_override_replaces_the_persona() -> None:
    messages = render_messages(_agent(), event(state={}), system_prompt="Debug yourself.")
    assert messages[0]["content"] == "Debug yourself."


def test_only_read_fields_reach_the_prompt_and_empty_ones_are_skipped() -> None:
    agent = _agent(reads=["input", "draft", "review", "notes", "extra", "missing"])
    state: dict[str, Any] = {
        "input": "brief",
        "draft": "",
        "review": None,
        "notes": [],
        "extra": {},
        "secret": "not for this agent",
    }
    user = render_messages(agent, event(state=state))[1]["content"]
    assert user == "## input\nbrief"


def test_non_string_values_are_json_encoded() -> None:
    agent = _agent(reads=["scores", "count", "flags"])
    state = {"scores": {"a": 1}, "count": 0, "flags": ["x", "y"]}
    sections = render_messages(agent, event(state=state))[1]["content"].split("\n\n")
    assert sections == ['## scores\n{"a":1}', "## count\n0", '## flags\n["x","y"]']
    assert json.loads(sections[0].split("\n", 1)[1]) == {"a": 1}


def test_without_reads_every_state_field_is_shown_in_order() -> None:
    user = render_messages(_agent(), event(state={"b": "2", "a": "1"}))[1]["content"]
    assert user == "## b\n2\n\n## a\n1"


def test_empty_state_still_gives_the_model_a_user_message() -> None:
    assert render_messages(_agent(), event(state=None))[1]["content"] == "(empty state)"


# -- over_budget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hop", "max_hops", "refused"),
    [
        (0, 1, False),
        (2, 3, False),
        (3, 3, True),
        (9, 3, True),
        (100, None, False),
    ],
)
def test_hop_budget_refuses_exactly_when_the_next_hop_exceeds_it(
    hop: int, max_hops: int | None, refused: bool
) -> None:
    reason = over_budget(event(hop=hop, budget=Budget(max_hops=max_hops)), NOW)
    assert (reason is not None) is refused
    if refused:
        assert f"hop {hop + 1} of {max_hops}" in str(reason)


def test_deadline_refuses_only_after_it_passes() -> None:
    budget = Budget(deadline=NOW)
    assert over_budget(event(budget=budget), NOW - timedelta(seconds=1)) is None
    reason = over_budget(event(budget=budget), NOW + timedelta(seconds=1))
    assert reason is not None and "deadline" in reason


# -- choose_route --------------------------------------------------------------------------

ROUTES = [
    {"when": "^APPROVED", "finish": True, "output": "draft"},
    {"when": "REVISE", "emit": "revision.requested"},
    {"when": "REVISE|APPROVED", "fail": True},
    {"emit": "draft.ready"},
]


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("APPROVED, and REVISE nothing", 0),  # first match wins even when later ones match too
        ("Please REVISE: 1. shorter", 1),
        ("NOT APPROVED", 2),
        ("no keyword at all", 3),  # a route without ``when`` is the default
    ],
)
def test_first_matching_route_wins(text: str, index: int) -> None:
    agent = _agent(routes=ROUTES)
    assert choose_route(agent, text) is agent.routes[index]


def test_no_route_matches() -> None:
    assert choose_route(_agent(routes=[{"when": "^OK", "finish": True}]), "nope") is None


# -- build_delta ---------------------------------------------------------------------------


def test_templates_are_filled_and_other_values_kept() -> None:
    agent = _agent(
        writes={
            "draft": "{output}",
            "log": "{agent} at hop {hop}",
            "count": 1,
            "tags": ["a"],
            "plain": "no placeholders",
        }
    )
    delta = build_delta(agent, agent.routes[0], "the {text}", event(hop=4))
    assert delta == {
        "draft": "the {text}",
        "log": "reviewer at hop 5",
        "count": 1,
        "tags": ["a"],
        "plain": "no placeholders",
    }


def test_route_writes_override_agent_writes() -> None:
    agent = _agent(
        writes={"status": "drafting", "draft": "{output}"},
        routes=[{"emit": "review.done", "writes": {"status": "done", "n": 2}}],
    )
    delta = build_delta(agent, agent.routes[0], "text", event())
    assert delta == {"status": "done", "draft": "text", "n": 2}


# -- outcome -------------------------------------------------------------------------------


def _editor() -> AgentSpec:
    return load_mesh(WRITER_EDITOR).agent("editor")


def test_finish_route_names_the_output_field() -> None:
    out = outcome(_editor(), event(hop=3, state_version=7), "APPROVED", Usage(tokens_in=5), [])
    assert out.type == FINISH
    assert out.payload["output_field"] == "draft"
    assert out.delta == {"review": "APPROVED", "history": "editor: review at hop 4"}
    assert (out.hop, out.state_version, out.source) == (4, 7, "editor")
    assert out.usage.tokens_in == 5


def test_emit_route_sends_the_event_type_and_route_writes() -> None:
    out = outcome(_editor(), event(), "REVISE: 1. cut", Usage(), [])
    assert out.type == "revision.requested"
    assert out.delta is not None and out.delta["revisions"] == 1


def test_fail_route_fails_the_trace_with_a_reason() -> None:
    agent = _agent(routes=[{"when": "^GIVE UP", "fail": True}, {"emit": "review.done"}])
    out = outcome(agent, event(), "GIVE UP: impossible brief", Usage(), [])
    assert out.type == FAIL
    assert "impossible brief" in out.payload["reason"]


def test_no_matching_route_is_a_failed_step_with_a_reason() -> None:
    agent = _agent(routes=[Route(when="^OK", finish=True).model_dump()])
    out = outcome(agent, event(), "maybe", Usage(), [])
    assert out.type == STEP_FAILED
    assert out.delta is None
    assert "no route matched" in out.payload["reason"]
    assert out.payload["text"] == "maybe"


def test_event_ids_are_deterministic() -> None:
    editor, other = _editor(), _agent()
    cause = event(event_id="cause-1")
    first = outcome(editor, cause, "APPROVED", Usage(), [])
    again = outcome(editor, event(event_id="cause-1"), "REVISE", Usage(), [])
    assert first.event_id == again.event_id  # a rerun of the same step: the keeper dedupes
    assert first.causation_id == "cause-1"
    assert outcome(other, cause, "APPROVED", Usage(), []).event_id != first.event_id
    assert (
        outcome(editor, event(event_id="cause-2"), "APPROVED", Usage(), []).event_id
        != first.event_id
    )


def test_input_fingerprint_follows_the_prompt() -> None:
    chat = [{"role": "user", "content": "a"}]
    same = outcome(_editor(), event(), "APPROVED", Usage(), chat)
    again = outcome(_editor(), event(), "APPROVED", Usage(), list(chat))
    other = outcome(_editor(), event(), "APPROVED", Usage(), [{"role": "user", "content": "b"}])
    assert same.payload["input_fingerprint"] == again.payload["input_fingerprint"]
    assert same.payload["input_fingerprint"] != other.payload["input_fingerprint"]
