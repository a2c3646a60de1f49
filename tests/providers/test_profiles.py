"""Each provider profile against a scripted server that answers as that provider documents:
its URL, key header, request fields, answer shapes, errors and rate-limit headers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from tests.providers.conftest import (
    KEY,
    WEATHER_TOOL,
    call,
    failure,
    scripted,
    tier,
    user,
)


@pytest.fixture(scope="module")
def openai() -> Iterator[str]:
    """Answers as OpenAI: cached and reasoning token details, reasoning models refusing
    ``temperature`` and ``max_tokens``."""
    usage = {"cached_tokens": 4, "reasoning_tokens": 2}
    with scripted(provider="openai", api_key=KEY, usage=usage) as (root, _):
        yield root + "/v1"


def test_openai_reasoning_models_get_max_completion_tokens_and_no_temperature(
    openai: str,
) -> None:
    reasoning = {"base_url": openai, "model": "o4-mini", "max_retries": 0}

    answer = call(tier(provider="openai", **reasoning), user("one two three"), max_tokens=50)
    refused = failure(tier(**reasoning), user("one two three"), max_tokens=50)

    assert answer.text == "four tokens of reply"
    assert refused.reason == "http_400" and "max_tokens, temperature" in str(refused)


def test_openai_cached_and_reasoning_tokens_are_priced_apart(openai: str) -> None:
    prices = {
        "price_in_per_mtok": 2.0,
        "price_cached_in_per_mtok": 0.5,
        "price_out_per_mtok": 8.0,
        "price_reasoning_out_per_mtok": 10.0,
    }

    usage = call(tier(provider="openai", base_url=openai, **prices), user("one two three")).usage

    # 7 prompt tokens (words) of which 4 cached; 4 answer tokens of which 2 reasoning
    assert (usage.tokens_in, usage.tokens_cached, usage.tokens_out, usage.tokens_reasoning) == (
        7,
        4,
        4,
        2,
    )
    assert usage.cost == pytest.approx((3 * 2.0 + 4 * 0.5 + 2 * 8.0 + 2 * 10.0) / 1e6)
    assert not usage.estimated


def test_azure_calls_its_deployment_with_api_version_and_api_key_header() -> None:
    with scripted(api_key=KEY) as (root, server):
        azure = tier(
            provider="azure", base_url=root, azure_deployment="prod-4o", api_version="2024-10-21"
        )
        first = call(azure, user("one two three"))
        refused = failure(azure, user("one two three"), api_key="wrong")

    assert first.text == "four tokens of reply" and first.usage.calls == 1
    assert refused.reason == "http_401" and refused.attempts == 1
    assert "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21" in str(refused)
    assert server.stats()["completions"] == 1


def test_azure_rate_limits_are_retried_after_retry_after_ms() -> None:
    limit = {"rate_limit": {"every": 1, "retry_after": 0.05}}
    with scripted(faults=limit) as (root, server):
        azure = tier(
            provider="azure",
            base_url=root,
            azure_deployment="prod-4o",
            api_version="2024-10-21",
            max_retries=1,
        )
        # Retry-After says 1 s, more than this client waits; retry-after-ms says 50 ms
        refused = failure(azure, user("one two three"), max_retry_after_s=0.5)

    assert refused.reason == "rate_limited" and refused.attempts == 2
    assert "asks to wait" not in str(refused)
    assert server.stats()["rate_limited"] == 2


def test_an_azure_tier_without_deployment_or_api_version_fails_the_spec() -> None:
    with pytest.raises(ValidationError, match="azure_deployment and api_version"):
        tier(provider="azure", base_url="https://example.openai.azure.com")


def test_an_anthropic_tier_asking_for_json_schemas_fails_the_spec() -> None:
    with pytest.raises(ValidationError, match="Messages API does not take"):
        tier(
            provider="anthropic",
            base_url="https://api.anthropic.com",
            structured_output="json_schema",
        )
    with pytest.raises(ValidationError, match="set structured_output"):
        tier(provider="anthropic", base_url="https://api.anthropic.com", tool_calls="prompted")


def test_stream_timeouts_on_a_tier_that_does_not_stream_fail_the_spec() -> None:
    with pytest.raises(ValidationError, match="set stream: true"):
        tier(base_url="http://localhost:8080/v1", idle_timeout_s=30)


@pytest.fixture(scope="module")
def anthropic() -> Iterator[str]:
    usage = {"cached_tokens": 3, "cache_write_tokens": 2}
    with scripted(api_key=KEY, usage=usage) as (root, _):
        yield root


def test_anthropic_gets_its_system_field_and_tool_use_and_tool_result_blocks(
    anthropic: str,
) -> None:
    claude = tier(provider="anthropic", base_url=anthropic, model="claude-sonnet-4-5")
    asked = user("What is the weather in Paris?")

    first = call(claude, asked, tools=[WEATHER_TOOL])
    result = {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "sunny, 21C"}
    second = call(claude, [*asked, first.message(), result], tools=[WEATHER_TOOL])

    # the server refuses a system role among the messages and a tool_result that answers
    # no tool_use: both calls passing is the conversion holding
    (weather,) = first.tool_calls
    assert weather.id.startswith("toolu_") and weather.name == "get_weather"
    assert json.loads(weather.arguments) == {"city": "Paris"}
    assert second.text == "It is sunny in Paris."


def test_anthropic_cache_read_and_write_tokens_are_priced_apart(anthropic: str) -> None:
    claude = tier(
        provider="anthropic",
        base_url=anthropic + "/v1",  # as `choreo up` gives a scripted tier: the same API root
        price_in_per_mtok=3.0,
        price_cached_in_per_mtok=0.3,
        price_cache_write_per_mtok=3.75,
        price_out_per_mtok=15.0,
    )

    usage = call(claude, user("one two three")).usage

    # 7 prompt tokens: 2 fresh (input_tokens), 3 read from the cache, 2 written to it
    assert (usage.tokens_in, usage.tokens_cached, usage.tokens_cache_write) == (7, 3, 2)
    assert usage.cost == pytest.approx((2 * 3.0 + 3 * 0.3 + 2 * 3.75 + 4 * 15.0) / 1e6)


def test_anthropic_errors_and_rate_limits_come_in_its_shape() -> None:
    limit = {"rate_limit": {"every": 2, "retry_after": 0}}
    with scripted(api_key=KEY, faults=limit) as (root, server):
        claude = tier(provider="anthropic", base_url=root)
        wrong_key = failure(claude, user("one two three"), api_key="wrong")
        call(claude, user("one two three"))
        retried = call(claude, user("one two three"))  # the server's second: refused once

    assert wrong_key.reason == "http_401" and "missing or wrong API key" in str(wrong_key)
    assert retried.text == "four tokens of reply" and retried.usage.calls == 2
    assert server.stats()["rate_limited"] == 1


@pytest.mark.parametrize("provider", ["gemini", "vllm", "llamacpp", "openai_compatible"])
def test_openai_compatible_providers_complete_a_tool_round_trip(provider: str) -> None:
    with scripted(provider="llamacpp" if provider == "llamacpp" else "vllm") as (root, _):
        model = tier(provider=provider, base_url=root + "/v1")
        asked = user("What is the weather in Paris?")
        first = call(model, asked, tools=[WEATHER_TOOL])
        result = {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "sunny"}
        second = call(model, [*asked, first.message(), result], tools=[WEATHER_TOOL])

    assert [c.name for c in first.tool_calls] == ["get_weather"]
    assert second.text == "It is sunny in Paris."


def test_tool_calls_without_ids_get_ids_from_the_request_and_object_arguments_become_json() -> None:
    with scripted(provider="ollama") as (root, _):
        ollama = tier(provider="ollama", base_url=root + "/v1")
        asked = user("What is the weather in Paris?")
        once, again = (call(ollama, asked, tools=[WEATHER_TOOL]) for _ in range(2))
        other = call(ollama, user("And the weather in Rome?"), tools=[WEATHER_TOOL])

    (weather,) = once.tool_calls
    assert weather.id.startswith("call_") and json.loads(weather.arguments) == {"city": "Paris"}
    assert again.tool_calls == once.tool_calls  # a replayed step names its calls the same
    assert other.tool_calls[0].id != weather.id


def test_reasoning_content_is_not_part_of_the_answer() -> None:
    with scripted(provider="llamacpp") as (root, _):
        answer = call(tier(provider="llamacpp", base_url=root + "/v1"), user("think hard"))

    assert answer.text == "Forty-two."
