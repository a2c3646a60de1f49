"""Provider quirks through a whole trace on a real broker: its cost when the provider reads
part of each prompt from its cache and spends part of each answer on reasoning (the keeper's
totals are the hand-computed sum over the calls the scripted server answered), and a tool step
against a server that gives its tool calls no ids and their arguments as an object, and on a
tier whose tool calls are prompted (JSON answers instead of the API's tools)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from choreo.kafka.broker import BrokerHandle, broker_kind
from choreo.schemas import TerminalResult
from choreo.testing import Mesh

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent

PRICES = {
    "price_in_per_mtok": 2.0,
    "price_cached_in_per_mtok": 0.5,
    "price_out_per_mtok": 8.0,
    "price_reasoning_out_per_mtok": 10.0,
}
CACHED, REASONING = 5, 2  # of every call's prompt and answer tokens


def mesh_spec(folder: Path) -> Path:
    (folder / "model.yaml").write_text(
        yaml.safe_dump(
            {
                "model": "cost",
                "provider": "openai",
                "usage": {"cached_tokens": CACHED, "reasoning_tokens": REASONING},
                "rules": [
                    {
                        "when": {"system": "writer"},
                        "reply": "A short draft about caches and costs.",
                    },
                    {"when": {"system": "editor"}, "reply": "APPROVED, it reads well as it is."},
                ],
            }
        )
    )
    agent: dict[str, Any] = {"model": "premium", "reads": ["input"]}
    spec = {
        "name": "cost",
        "entry": ["draft.requested"],
        "models": {
            "premium": {"model": "gpt-4o", "provider": "openai", "script": "model.yaml", **PRICES}
        },
        "agents": [
            {
                **agent,
                "name": "writer",
                "subscribe": ["draft.requested"],
                "persona": "You are the writer. Write one line on the topic in `input`.",
                "routes": [{"emit": "draft.ready"}],
            },
            {
                **agent,
                "name": "editor",
                "subscribe": ["draft.ready"],
                "persona": "You are the editor. Answer APPROVED when the line is good.",
                "routes": [{"when": "^APPROVED", "finish": True}],
            },
        ],
    }
    path = folder / "mesh.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_traces_cost_prices_cached_and_reasoning_tokens_apart(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    if broker_kind(broker.bootstrap) == "kafka":
        pytest.skip("pricing is the model client's and the keeper's sum, on any broker alike")

    async def scenario() -> tuple[TerminalResult, dict[str, Any]]:
        async with Mesh(mesh_spec(tmp_path), broker.bootstrap) as mesh:
            trace_id = await mesh.client.submit("Prompt caching.")
            result = await mesh.client.wait(trace_id, timeout_s=60)
            async with httpx.AsyncClient() as http:
                answered = await http.get(mesh.model_url("premium") + "/stats")
            return result, answered.json()["models"]["gpt-4o"]

    result, served = asyncio.run(scenario())

    assert result.status == "completed", result.reason
    calls = served["completions"]
    prompt, answer = served["prompt_tokens"], served["completion_tokens"]
    assert calls == 2 and (result.usage.tokens_in, result.usage.tokens_out) == (prompt, answer)
    by_hand = (
        (prompt - CACHED * calls) * 2.0
        + CACHED * calls * 0.5
        + (answer - REASONING * calls) * 8.0
        + REASONING * calls * 10.0
    ) / 1e6
    assert result.usage.cost == pytest.approx(by_hand, rel=1e-9)
    # what the plain prices alone would have said, to show the difference is counted
    assert by_hand != pytest.approx((prompt * 2.0 + answer * 8.0) / 1e6)


def tool_mesh(folder: Path, rules: list[dict[str, Any]], **tier: Any) -> Path:
    """A one-agent mesh whose forecaster calls ``get_weather``, its tier (``tier`` added)
    scripted by ``rules`` as Ollama answers."""
    (folder / "model.yaml").write_text(
        yaml.safe_dump({"model": "local", "provider": "ollama", "rules": rules})
    )
    spec = {
        "name": "ids",
        "entry": ["question"],
        "python_path": [str(HERE)],
        "models": {
            "local": {"model": "qwen", "provider": "ollama", "script": "model.yaml", **tier}
        },
        "agents": [
            {
                "name": "forecaster",
                "subscribe": ["question"],
                "model": "local",
                "persona": "You answer questions about the weather.",
                "reads": ["input"],
                "tools": [{"function": "weather_tools:get_weather"}],
                "routes": [{"finish": True}],
            }
        ],
    }
    path = folder / "mesh.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def forecast(broker: BrokerHandle, spec: Path) -> tuple[TerminalResult, list[Any]]:
    """The forecaster's answer to a weather question, and its trace's hop records."""

    async def scenario() -> tuple[TerminalResult, list[Any]]:
        async with Mesh(spec, broker.bootstrap) as mesh:
            trace_id = await mesh.client.submit("What is the weather in Paris?")
            return await mesh.client.wait(trace_id, timeout_s=60), await mesh.client.hops(trace_id)

    return asyncio.run(scenario())


def test_a_tool_step_completes_when_the_provider_gives_its_calls_no_ids(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    if broker_kind(broker.bootstrap) == "kafka":
        pytest.skip("the tool-call ids are the model client's, on any broker alike")
    rules: list[dict[str, Any]] = [  # no tool-call ids, arguments as an object
        {"when": {"tool": "sunny"}, "reply": "It is sunny in Paris."},
        {
            "when": {"user": "weather"},
            "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
        },
    ]

    result, hops = forecast(broker, tool_mesh(tmp_path, rules))

    assert result.status == "completed", result.reason
    assert result.output == "It is sunny in Paris."
    (call,) = [c for hop in hops for c in hop.tool_calls]
    assert (call.name, call.status, call.result_chars) == ("get_weather", "ok", 19)


def test_a_tool_step_completes_when_its_tier_prompts_for_tool_calls(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    """The model sees its tools in the system prompt and a result as a user message, and
    calls and answers in JSON text (the scripted model only matches what it is shown)."""
    if broker_kind(broker.bootstrap) == "kafka":
        pytest.skip("prompted tool calls are the model client's, on any broker alike")
    rules: list[dict[str, Any]] = [
        {
            "when": {"user": "get_weather returned: sunny"},
            "reply": '{"answer": "It is sunny in Paris."}',
        },
        {
            "when": {"system": "- get_weather: The weather in a city", "user": "weather"},
            "reply": '{"tool": "get_weather", "arguments": {"city": "Paris"}}',
        },
    ]
    spec = tool_mesh(tmp_path, rules, tool_calls="prompted", structured_output="json_object")

    result, hops = forecast(broker, spec)

    assert result.status == "completed", result.reason
    assert result.output == "It is sunny in Paris."
    (call,) = [c for hop in hops for c in hop.tool_calls]
    assert (call.name, call.status, call.result_chars) == ("get_weather", "ok", 19)
