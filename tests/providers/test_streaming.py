"""Streamed answers (``stream: true``) over real HTTP: assembled as the whole answer would
be, and a stream cut mid-way, a stalled one, one that never starts and one without usage each
ending the call with a reason and the best usage estimate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.providers.conftest import KEY, WEATHER_TOOL, call, failure, scripted, tier, user

#: Both wire shapes: OpenAI's chat chunks and Anthropic's message events.
APIS = {
    "chat": {"provider": "openai"},
    "messages": {"provider": "anthropic"},
}


@pytest.fixture(scope="module")
def root() -> Iterator[str]:
    usage = {"cached_tokens": 2, "cache_write_tokens": 1, "reasoning_tokens": 1}
    with scripted(api_key=KEY, provider="openai", usage=usage) as (url, _):
        yield url


def streaming(root: str, api: str, **fields: Any) -> Any:
    base_url = root + "/v1" if api == "chat" else root
    return tier(base_url=base_url, stream=True, **APIS[api], **fields)


@pytest.mark.parametrize("api", APIS)
def test_a_streamed_answer_is_the_answer_sent_whole(root: str, api: str) -> None:
    whole = call(streaming(root, api).model_copy(update={"stream": False}), user("one two"))

    streamed = call(streaming(root, api), user("one two"))

    assert streamed.text == whole.text == "four tokens of reply"
    keep = ("tokens_in", "tokens_out", "tokens_cached", "tokens_cache_write", "tokens_reasoning")
    assert [getattr(streamed.usage, k) for k in keep] == [getattr(whole.usage, k) for k in keep]
    assert streamed.usage.tokens_cached == 2 and not streamed.usage.estimated


@pytest.mark.parametrize("api", APIS)
def test_streamed_tool_calls_are_assembled(root: str, api: str) -> None:
    asked = user("What is the weather in Paris?")

    first = call(streaming(root, api), asked, tools=[WEATHER_TOOL])
    result = {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "sunny"}
    second = call(streaming(root, api), [*asked, first.message(), result], tools=[WEATHER_TOOL])

    (weather,) = first.tool_calls
    assert weather.name == "get_weather" and json.loads(weather.arguments) == {"city": "Paris"}
    assert second.text == "It is sunny in Paris."


def test_streamed_object_arguments_without_ids_are_assembled() -> None:
    with scripted(provider="ollama") as (url, _):
        answer = call(
            tier(provider="ollama", base_url=url + "/v1", stream=True),
            user("What is the weather in Paris?"),
            tools=[WEATHER_TOOL],
        )

    (weather,) = answer.tool_calls
    assert weather.id.startswith("call_") and json.loads(weather.arguments) == {"city": "Paris"}


@pytest.mark.parametrize("api", APIS)
def test_a_stream_cut_midway_ends_the_call_with_its_reason_and_an_estimate(
    root: str, api: str
) -> None:
    cut = failure(streaming(root, api), user("cut me short"))

    assert cut.reason == "stream_cut" and cut.attempts == 1  # billed, so never sent again
    assert cut.usage.estimated and cut.usage.tokens_in > 0 and cut.usage.calls == 1


@pytest.mark.parametrize("api", APIS)
def test_a_stalled_stream_ends_at_the_idle_timeout(root: str, api: str) -> None:
    stalled = failure(streaming(root, api, idle_timeout_s=0.5), user("stall here"))

    assert stalled.reason == "stream_stalled" and stalled.attempts == 1
    assert "nothing for 0.5s" in str(stalled)
    assert stalled.usage.estimated and stalled.usage.tokens_in > 0


def test_a_stream_that_never_starts_is_retried_then_reported() -> None:
    with scripted(latency_ms=1000) as (url, _):
        slow = tier(base_url=url + "/v1", stream=True, first_token_timeout_s=0.3, max_retries=1)
        late = failure(slow, user("one two three"))

    assert late.reason == "timeout" and late.attempts == 2
    assert "no first chunk within 0.3s" in str(late)


@pytest.mark.parametrize("api", APIS)
def test_a_stream_without_usage_is_counted_by_estimate(api: str) -> None:
    with scripted(api_key=KEY, faults={"no_usage": True}) as (url, _):
        answer = call(streaming(url, api), user("one two three"))

    assert answer.text == "four tokens of reply"
    assert answer.usage.estimated and answer.usage.tokens_in > 0 and answer.usage.tokens_out > 0
