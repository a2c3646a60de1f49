"""The public API without a broker: what ``help(choreo)`` documents, the step's view of an
event, and the scripted model's tool-call rules."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

import choreo
from choreo.budget.left import left
from choreo.errors import UndeclaredRead
from choreo.model_server.script import ScriptError, parse_script
from choreo.model_server.server import completion, matching_rule
from choreo.schemas import Budget, Envelope, Totals, Usage


def test_help_shows_the_documented_api() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", "import choreo; help(choreo)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PAGER": "cat", "TERM": "dumb"},
    )
    assert shown.returncode == 0, shown.stderr
    for name in (
        "agent(",
        "tool(",
        "class Step",
        "class Result",
        "class BudgetLeft",
        "class ToolError",
        "choreo up mesh.yaml",
        "kind: python",
    ):
        assert name in shown.stdout, name
    assert all(getattr(choreo, name).__doc__ for name in choreo.__all__ if name != "__version__")
    assert repr(choreo.Step).endswith("'choreo.Step'>")


def _event(**fields: object) -> Envelope:
    return Envelope(
        event_id="e1",
        trace_id="t1",
        type="order.asked",
        source="triage",
        hop=2,
        state_version=4,
        state={"input": "order 1042", "items": [1]},
        **fields,
    )  # type: ignore[arg-type]


def test_the_step_is_a_read_only_view_of_its_event() -> None:
    step = choreo.Step(_event(), agent="lookup", clients={}, default_tier=None)
    assert (step.trace_id, step.hop, step.version, step.input) == ("t1", 3, 4, "order 1042")
    with pytest.raises(TypeError):
        step.state["input"] = "x"  # type: ignore[index]
    step.state["items"].append(2)  # a copy: the event is untouched
    assert step._event.state == {"input": "order 1042", "items": [1]}
    result = step.emit("order.found", {"order": 1}, text="found")
    assert (result.action, result.event_type, dict(result.writes)) == (
        "emit",
        "order.found",
        {"order": 1},
    )
    assert step.fail("gone").reason == "gone"
    assert step.finish("order").output_field == "order"


def test_a_step_reading_a_field_its_agent_did_not_declare_is_told_which_and_why() -> None:
    step = choreo.Step(
        _event(), agent="lookup", clients={}, default_tier=None, reads=["items", "order"]
    )
    assert step.input == "order 1042"  # the task's input is always there
    assert (step.state["items"], step.state.get("order"), "order" in step.state) == (
        [1],
        None,
        False,
    )
    for read in (
        lambda: step.state["notes"],
        lambda: step.state.get("notes"),
        lambda: "notes" in step.state,
    ):
        with pytest.raises(UndeclaredRead, match="'notes', not in its reads") as e:
            read()
        assert isinstance(e.value, KeyError) and e.value.field == "notes"
    assert sorted(step.state) == ["input", "items"]


def test_budget_left_counts_the_trace_and_the_step() -> None:
    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    event = _event(
        budget=Budget(max_hops=5, max_tokens=100, max_cost=1.0, deadline=deadline),
        totals=Totals(tokens_in=30, tokens_out=20, cost=0.25),
    )
    remaining = left(
        event, Usage(tokens_in=10, tokens_out=5, cost=0.5), now=deadline - timedelta(seconds=9)
    )
    assert remaining == choreo.BudgetLeft(hops=2, tokens=35, cost=0.25, seconds=9.0)
    assert remaining.cap(None) == 35 and remaining.cap(10) == 10
    assert remaining.exhausted() is None
    spent = left(event, Usage(tokens_in=50), now=deadline)
    assert spent.exhausted() == "token budget exhausted"


async def _plain(step: choreo.Step) -> choreo.Result:
    return step.fail("no")


def test_the_decorator_wants_an_async_function() -> None:
    wrapped = choreo.agent(timeout_s=3)(_plain)
    assert (wrapped.name, wrapped.timeout_s) == ("_plain", 3)
    with pytest.raises(choreo.HandlerError, match="async def"):
        choreo.agent(lambda step: step)  # type: ignore[arg-type, return-value]


SCRIPT = {
    "model": "t",
    "rules": [
        {"when": {"tool": "^7$"}, "reply": "seven"},
        {"when": {"user": "add"}, "tool_calls": [{"name": "add", "arguments": {"a": 3, "b": 4}}]},
    ],
}


def test_the_scripted_model_asks_for_tools_then_reads_their_results() -> None:
    script = parse_script(SCRIPT)
    first = [("user", "please add")]
    body = json.dumps({"messages": [{"role": "user", "content": "please add"}]}).encode()
    answer = completion(script, matching_rule(script, "t", first), body, first)["choices"][0]
    assert answer["finish_reason"] == "tool_calls"
    call = answer["message"]["tool_calls"][0]
    assert call["function"] == {"name": "add", "arguments": '{"a": 3, "b": 4}'}
    assert answer["message"]["content"] is None
    second = [*first, ("assistant", ""), ("tool", "7")]
    again = completion(script, matching_rule(script, "t", second), body + b" ", second)["choices"][
        0
    ]
    assert again["message"] == {"role": "assistant", "content": "seven"}


def test_a_rule_gives_a_reply_or_tool_calls_not_both() -> None:
    with pytest.raises(ScriptError, match="exactly one of reply or tool_calls"):
        parse_script({"model": "t", "rules": [{"reply": "x", "tool_calls": [{"name": "a"}]}]})
