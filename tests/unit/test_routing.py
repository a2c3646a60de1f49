"""A route asked for as structured output (choreo.agent.routing, choreo.router.classify)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreo.agent import routing
from choreo.agent.step import outcome
from choreo.router import classify
from choreo.schemas import Usage
from choreo.schemas.records import FINISH, STEP_FAILED
from choreo.spec.mesh import AgentSpec
from tests.unit.support import event

EDITOR = AgentSpec.model_validate(
    {
        "name": "editor",
        "subscribe": ["draft.ready"],
        "persona": "You review drafts.",
        "model": "small",
        "routes": [
            {"when": "^APPROVED", "finish": True, "output": "draft"},
            {"when": "^REVISE", "emit": "revision.requested"},
            {"fail": True},
        ],
    }
)


def test_each_route_is_named_by_its_label_its_pattern_word_or_its_action() -> None:
    assert routing.route_names(EDITOR) == ["APPROVED", "REVISE", "fail"]
    repeated = EDITOR.model_copy(update={"routes": [EDITOR.routes[2], EDITOR.routes[2]]})
    assert routing.route_names(repeated) == ["fail", "fail-2"]


def test_the_schema_offers_exactly_the_routes_in_the_shape_the_tier_takes() -> None:
    llama = routing.response_format(EDITOR, "json_object")
    openai = routing.response_format(EDITOR, "json_schema")
    assert llama is not None and openai is not None
    assert llama["type"] == "json_object"
    assert openai["json_schema"]["strict"] is True
    assert llama["schema"] == openai["json_schema"]["schema"]
    assert llama["schema"]["properties"]["route"]["enum"] == ["APPROVED", "REVISE", "fail"]
    assert list(llama["schema"]["properties"]) == ["route", "text"]  # the route first


def test_nothing_is_asked_without_a_choice_or_a_tier_that_takes_a_schema() -> None:
    single = EDITOR.model_copy(update={"routes": EDITOR.routes[:1]})
    assert routing.response_format(single, "json_object") is None
    assert routing.response_format(EDITOR, None) is None


def test_a_whole_answer_names_its_route_and_its_text() -> None:
    answer = json.dumps({"route": "REVISE", "text": "Cut the last line."})
    route, text = routing.read_choice(EDITOR, answer) or (None, "")
    assert route is EDITOR.routes[1]
    assert text == "Cut the last line."


def test_an_answer_cut_by_its_token_limit_still_names_its_route() -> None:
    route, text = routing.read_choice(EDITOR, '{"route": "APPROVED", "text": "Ready \\"as') or (
        None,
        "",
    )
    assert route is EDITOR.routes[0]
    assert text == 'Ready "as'


@pytest.mark.parametrize(
    "answer",
    ["APPROVED, but only just.", '{"route": "MAYBE", "text": "x"}', "", '{"text": "no route"}'],
)
def test_an_answer_that_names_no_known_route_is_no_choice(answer: str) -> None:
    assert routing.read_choice(EDITOR, answer) is None


@given(st.text())
def test_any_answer_is_either_a_known_route_or_no_choice(answer: str) -> None:
    choice = routing.read_choice(EDITOR, answer)
    assert choice is None or any(choice[0] is route for route in EDITOR.routes)


def test_a_chosen_route_wins_over_the_patterns_and_says_so() -> None:
    out = outcome(EDITOR, event(), "Fine as it is.", Usage(), [], chosen=EDITOR.routes[0])
    assert out.type == FINISH
    assert out.payload["routed_by"] == "structured output"
    unrouted = outcome(
        EDITOR.model_copy(update={"routes": EDITOR.routes[:2]}), event(), "ok", Usage(), []
    )
    assert unrouted.type == STEP_FAILED


# -- a router's label ----------------------------------------------------------------------

ROUTER = AgentSpec.model_validate(
    {
        "name": "triage",
        "kind": "router",
        "classify": "model",
        "subscribe": ["ticket.received"],
        "persona": "You route tickets.",
        "model": "small",
        "routes": [
            {"label": "billing", "emit": "billing.asked"},
            {"label": "shipping", "emit": "shipping.asked"},
            {"label": "other", "emit": "ticket.open"},
        ],
    }
)


def test_a_routers_answer_is_held_to_its_labels_and_read_back() -> None:
    shape = classify.label_format(ROUTER, "json_object")
    assert shape is not None
    assert shape["schema"]["properties"]["label"]["enum"] == ["billing", "shipping", "other"]
    assert classify.label_format(ROUTER, None) is None
    route = classify.by_label(ROUTER, classify.answered_label('{"label": "shipping"}'))
    assert route is ROUTER.routes[1]
    # free text is still read as before: its first word
    assert classify.by_label(ROUTER, classify.answered_label("billing, surely")) is ROUTER.routes[0]
