"""What the keeper hands the watchdog's progress-aware rules: shapes, tool calls, continuations."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from choreo.schemas import Envelope
from choreo.schemas.records import ToolCall
from choreo.services.keeper.fold import carried_over, tool_calls
from choreo.services.runtime.shapes import field_shape, normalise, shape_hash


def test_numbers_ids_and_timestamps_are_normalised_away() -> None:
    assert normalise("Job 4711: check 3, not ready.") == normalise("Job 4724: check 4, not ready.")
    assert normalise("Payment 0b9e8d7c-6f5a-4e3d-8c2b-1a0f9e8d7c6b pending at "
                     "2026-11-29T21:03:00Z") == "Payment <id> pending at <time>"
    assert normalise("ran  01J9ZQ4X8M6N7P8Q9R0S1T2V3W\nok") == "ran <id> ok"
    assert normalise("the brakes work") != normalise("the lights work")


@given(st.integers(), st.integers())
def test_values_that_differ_only_by_numbers_have_one_shape(a: int, b: int) -> None:
    assert shape_hash({"n": a, "text": f"attempt {a}"}) == \
        shape_hash({"n": b, "text": f"attempt {b}"})


def test_a_list_is_shaped_by_the_kinds_of_its_items() -> None:
    log = ["attempt 1: variant A", "attempt 2: variant B"]
    assert field_shape(log) == field_shape([*log, "attempt 3: variant A"])  # more of the same
    checklist = ["checked the brakes"]
    assert field_shape(checklist) != field_shape([*checklist, "checked the lights"])


def test_tool_calls_come_from_the_payload_as_name_and_arguments_hash() -> None:
    step = Envelope(event_id="e", trace_id="t", type="x", source="coder", payload={
        "tool_calls": [{"name": "search", "arguments": {"q": "kafka", "n": 3}},
                       {"name": "fetch", "args_hash": "abc"}, "junk"],
        "tools": [{"tool": "sandbox", "status": "ok", "args_hash": "def"},
                  {"tool": "sandbox", "status": "skipped"}]})
    again = Envelope(event_id="f", trace_id="t", type="x", source="coder", payload={
        "tool_calls": [{"name": "search", "arguments": {"n": 3, "q": "kafka"}}]})
    calls = tool_calls(step)
    assert [c.name for c in calls] == ["search", "fetch", "sandbox"]
    assert calls[1:] == [ToolCall(name="fetch", args_hash="abc"),
                         ToolCall(name="sandbox", args_hash="def")]
    assert tool_calls(again) == calls[:1]  # argument order does not matter


def test_a_continuation_starts_without_the_input_and_the_join_arrivals() -> None:
    fields = {"input": "go", "draft": "d", "join.halves": ["a", "b"], "rounds": 3}
    assert carried_over(fields) == {"draft": "d", "rounds": 3}
