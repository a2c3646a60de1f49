"""Tool schemas from signatures and docstrings; arguments checked before the call; failures
as messages for the model; the hash loop detection compares."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field

import choreo
from choreo.tools.base import ToolFailure
from choreo.tools.function import FunctionTool
from choreo.tools.record import args_sha256, canonical_arguments
from choreo.tools.schema import parse_docstring


@choreo.tool
async def search_docs(
    query: str, limit: Annotated[int, Field(ge=1, le=20)] = 5, kind: Literal["faq", "guide"] = "faq"
) -> list[str]:
    """Search the team's docs.

    Longer text the model does not need.

    Args:
        query: Words to look
            for, as typed.
        limit: Most hits to return.

    Returns:
        The hits.
    """
    return [f"{kind}:{query}"] * limit


@choreo.tool(name="lookup", timeout_s=3)
def sync_lookup(order_id: str) -> dict[str, str]:
    """Find an order."""
    if order_id == "0":
        raise choreo.ToolError("no order 0")
    if order_id == "1":
        raise KeyError(order_id)
    return {"id": order_id}


def test_schema_comes_from_hints_and_docstring() -> None:
    tool = FunctionTool(search_docs)
    assert tool.name == "search_docs"
    assert tool.description.startswith("Search the team's docs.")
    assert tool.parameters == {
        "type": "object",
        "additionalProperties": False,
        "required": ["query"],
        "properties": {
            "query": {"type": "string", "description": "Words to look for, as typed."},
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": 20,
                "default": 5,
                "description": "Most hits to return.",
            },
            "kind": {"type": "string", "enum": ["faq", "guide"], "default": "faq"},
        },
    }


def test_the_decorated_function_stays_callable_and_keeps_options() -> None:
    assert asyncio.run(search_docs("x", 2)) == ["faq:x", "faq:x"]
    tool = FunctionTool(sync_lookup, timeout_s=30)
    assert (tool.name, tool.timeout_s) == ("lookup", 3)


@pytest.mark.parametrize(
    ("arguments", "status", "message"),
    [
        ({"query": "q", "limit": 50}, "invalid", "limit: Input should be less than or equal to 20"),
        ({"limit": 2}, "invalid", "query: Field required"),
        ({"query": "q", "extra": 1}, "invalid", "extra: Extra inputs are not permitted"),
    ],
)
def test_arguments_are_checked_before_the_call(
    arguments: dict[str, Any], status: str, message: str
) -> None:
    with pytest.raises(ToolFailure) as failure:
        asyncio.run(FunctionTool(search_docs).call(arguments))
    assert failure.value.status == status
    assert message in str(failure.value)


def test_results_and_errors_are_text_for_the_model() -> None:
    tool = FunctionTool(sync_lookup)
    assert json.loads(asyncio.run(tool.call({"order_id": "7"}))) == {"id": "7"}
    with pytest.raises(ToolFailure, match=r"^no order 0$"):
        asyncio.run(tool.call({"order_id": "0"}))
    with pytest.raises(ToolFailure, match=r"^KeyError: '1'$"):
        asyncio.run(tool.call({"order_id": "1"}))


def test_a_parameter_without_a_hint_is_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match="needs a type hint"):

        @choreo.tool
        def untyped(x):  # type: ignore[no-untyped-def]
            return x


def test_docstring_sections_and_continuations() -> None:
    summary, args = parse_docstring("""Do it.

    Args:
        first (int): One
            and more.
        **rest: The others.
    Raises:
        ValueError: never an argument
    """)
    assert summary == "Do it."
    assert args == {"first": "One and more.", "rest": "The others."}


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=6), _json, max_size=5))
def test_the_same_arguments_hash_the_same_whatever_their_order_and_spacing(
    arguments: dict[str, Any],
) -> None:
    reordered = dict(reversed(list(arguments.items())))
    first = canonical_arguments(json.dumps(arguments))
    second = canonical_arguments(json.dumps(reordered, indent=2))
    assert first[0] == arguments
    assert args_sha256(first[1]) == args_sha256(second[1])


def test_arguments_and_results_are_kept_only_when_content_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from choreo.observe import telemetry
    from choreo.tools.record import make_record

    plain = make_record("add", '{"a":1}', "ok", 1.5, "2", None)
    assert (plain.arguments, plain.result, plain.result_chars) == (None, None, 1)
    monkeypatch.setattr(telemetry, "_record_content", True)
    kept = make_record("add", '{"a":1}', "ok", 1.5, "2", None)
    assert (kept.arguments, kept.result) == ('{"a":1}', "2")
    assert kept.args_sha256 == plain.args_sha256
