"""Prompted tool calls (a tier's ``tool_calls: prompted``): what the request asks of the model,
and how its JSON answers read back, whatever names, arguments and cuts they have."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from choreo.models.answer import Completion, Usage
from choreo.models.providers import profile_for
from choreo.models.providers.prompted import (
    CALL_OR_ANSWER,
    call_or_answer,
    plain_conversation,
    read_answer,
)
from choreo.spec.mesh import ModelTier
from tests.providers.conftest import WEATHER_TOOL, user

TIER = ModelTier(
    model="m",
    base_url="http://127.0.0.1:9/v1",
    tool_calls="prompted",
    structured_output="json_object",
)
#: Never sends here: only its requests are looked at.
PROFILE = profile_for(TIER, httpx.AsyncClient(), None)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,30}", fullmatch=True)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
ARGUMENTS = st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4)


def request(
    tools: list[dict[str, Any]] | None, messages: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return PROFILE.body(
        TIER, messages or user("weather in Paris?"), temperature=None, max_tokens=50, tools=tools
    )


def test_the_request_describes_the_tools_and_holds_the_answer_to_a_call_or_an_answer() -> None:
    body = request([WEATHER_TOOL])

    assert "tools" not in body and "tool_choice" not in body
    system = body["messages"][0]["content"]
    assert (
        system.startswith("You are the tester.")
        and "- get_weather: The weather in a city." in system
    )
    schema = body["response_format"]["schema"]
    assert body["response_format"]["type"] == "json_object" and schema["title"] == CALL_OR_ANSWER
    call, answer = schema["anyOf"]
    assert call["properties"]["tool"] == {"const": "get_weather"}
    assert call["properties"]["arguments"] == WEATHER_TOOL["function"]["parameters"]
    assert answer["properties"] == {"answer": {"type": "string"}}


def test_a_tool_without_a_description_is_listed_by_its_name() -> None:
    bare = {"type": "function", "function": {"name": "ping", "description": None}}

    system = request([bare])["messages"][0]["content"]

    assert "\n- ping\n" in system and "None" not in system


def test_a_request_without_tools_or_tool_turns_is_left_as_it_is() -> None:
    body = request(None)

    assert "response_format" not in body and body["messages"] == user("weather in Paris?")


@given(NAMES, ARGUMENTS)
def test_a_json_call_reads_as_that_tool_call_and_goes_back_as_the_same_json(
    name: str, arguments: dict[str, Any]
) -> None:
    body = request([WEATHER_TOOL])
    written = json.dumps({"tool": name, "arguments": arguments})

    text, calls = read_answer(written, body)

    assert text == "" and len(calls) == 1
    assert (calls[0].name, json.loads(calls[0].arguments)) == (name, arguments)
    assert read_answer(written, body)[1][0].id == calls[0].id  # a replay names it the same
    turn = Completion(text, Usage(), scripted=False, tool_calls=calls).message()
    result = {"role": "tool", "tool_call_id": calls[0].id, "content": "done"}
    shown = plain_conversation([*user("q"), turn, result])
    assert json.loads(shown[2]["content"]) == {"tool": name, "arguments": arguments}
    assert shown[3] == {"role": "user", "content": f"{name} returned: done"}


@given(st.text(max_size=60), st.integers(min_value=0, max_value=200))
def test_an_answer_cut_anywhere_reads_as_a_prefix_of_its_text(answer: str, cut: int) -> None:
    body = request([WEATHER_TOOL])
    written = json.dumps({"answer": answer}, ensure_ascii=False)  # as models write it
    opening = len('{"answer": "')

    text, calls = read_answer(written[: opening + cut], body)

    assert calls == () and answer.startswith(text)
    assert read_answer(written, body) == (answer, ())


def test_a_cut_call_is_a_call_of_its_tool_with_arguments_that_are_not_json() -> None:
    body = request([WEATHER_TOOL])

    _, (call,) = read_answer('{"tool": "get_weather", "arguments": {"city": "Par', body)

    assert call.name == "get_weather"
    assert not isinstance(_json_or_none(call.arguments), dict)  # the tool loop answers "invalid"


def test_after_the_tools_are_withdrawn_the_answer_is_held_to_text() -> None:
    turns = [
        *user("weather?"),
        {"role": "assistant", "content": "", "tool_calls": [_call("c1", "get_weather")]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    body = request(None, turns)

    assert body["response_format"]["schema"]["properties"] == {"answer": {"type": "string"}}
    assert read_answer('{"tool": "get_weather", "arguments": {}}', body)[1] == ()
    assert read_answer('{"answer": "Sunny."}', body) == ("Sunny.", ())


def test_prose_from_a_server_that_ignored_the_schema_is_the_answer() -> None:
    body = request([WEATHER_TOOL])

    assert read_answer("It is sunny.", body) == ("It is sunny.", ())
    assert read_answer("[1, 2]", body) == ("[1, 2]", ())


def test_definitions_of_the_tools_parameters_move_to_the_root_and_clashes_take_any_object() -> None:
    def tool(name: str, color: list[str]) -> dict[str, Any]:
        parameters = {
            "type": "object",
            "properties": {"color": {"$ref": "#/$defs/Color"}},
            "$defs": {"Color": {"enum": color}},
        }
        return {"type": "function", "function": {"name": name, "parameters": parameters}}

    schema = call_or_answer([tool("paint", ["red"]), tool("dye", ["blue"])])

    assert schema["$defs"] == {"Color": {"enum": ["red"]}}
    paint, dye, _ = schema["anyOf"]
    assert paint["properties"]["arguments"]["properties"] == {"color": {"$ref": "#/$defs/Color"}}
    assert dye["properties"]["arguments"] == {"type": "object"}
    malformed = {"name": "odd", "parameters": {"type": "object", "$defs": ["not", "a", "map"]}}
    assert "$defs" not in call_or_answer([{"type": "function", "function": malformed}])


def _call(call_id: str, name: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
