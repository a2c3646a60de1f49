"""What the keeper hands the watchdog's progress-aware rules: shapes, tool calls, continuations."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from choreo.keeper.fold import carried_over, tool_calls
from choreo.schemas import Envelope
from choreo.schemas.shapes import field_shape, normalise, shape_hash


def test_numbers_ids_and_timestamps_are_normalised_away() -> None:
    assert normalise("Job 4711: check 3, not ready.") == normalise("Job 4724: check 4, not ready.")
    assert (
        normalise("Payment 0b9e8d7c-6f5a-4e3d-8c2b-1a0f9e8d7c6b pending at 2026-11-29T21:03:00Z")
        == "Payment <id> pending at <time>"
    )
    assert normalise("ran  01J9ZQ4X8M6N7P8Q9R0S1T2V3W\nok") == "ran <id> ok"
    assert normalise("the brakes work") != normalise("the lights work")


@given(st.integers(), st.integers())
def test_values_that_differ_only_by_numbers_have_one_shape(a: int, b: int) -> None:
    assert shape_hash({"n": a, "text": f"attempt {a}"}) == shape_hash(
        {"n": b, "text": f"attempt {b}"}
    )


def test_a_list_is_shaped_by_the_kinds_of_its_items() -> None:
    log = ["attempt 1: variant A", "attempt 2: variant B"]
    assert field_shape(log) == field_shape([*log, "attempt 3: variant A"])  # more of the same
    checklist = ["checked the brakes"]
    assert field_shape(checklist) != field_shape([*checklist, "checked the lights"])


def test_tool_calls_come_from_the_payload_as_name_and_arguments_hash() -> None:
    asked = [
        {"name": "search", "args_sha256": "abc", "status": "ok"},
        {"name": "fetch", "args_sha256": "def", "status": "error"},
    ]
    step = Envelope(
        event_id="e",
        trace_id="t",
        type="x",
        source="coder",
        payload={
            "tool_calls": asked,
            "tools": [
                {"tool": "sandbox", "status": "ok", "args_sha256": "0ff"},
                {"tool": "sandbox", "status": "skipped"},
                "junk",
            ],
        },
    )
    calls = tool_calls(step)
    assert [(c.name, c.args_sha256, c.status) for c in calls] == [
        ("search", "abc", "ok"),
        ("fetch", "def", "error"),
        ("sandbox", "0ff", "ok"),
    ]
    malformed = Envelope(
        event_id="f",
        trace_id="t",
        type="x",
        source="coder",
        payload={"tool_calls": [{"name": "search"}]},
    )
    assert tool_calls(malformed) == []  # recorded nowhere, and the fold goes on


def test_a_continuation_starts_without_the_input_and_the_join_arrivals() -> None:
    fields = {"input": "go", "draft": "d", "join.halves": ["a", "b"], "rounds": 3}
    assert carried_over(fields) == {"draft": "d", "rounds": 3}
