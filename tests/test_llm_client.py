"""The model client against a real scripted model server process, over real HTTP."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from choreo.model_server import model_server
from choreo.models.client import (
    Completion,
    ModelClient,
    ModelConfigError,
    ModelError,
    parse_retry_after,
)
from choreo.spec.mesh import ModelTier

SYSTEM = {"role": "system", "content": "You are the tester."}
RULES = [
    {"when": {"model": "^override-model$"}, "reply": "override model seen"},
    {"when": {"system": "You are the tester"}, "reply": "four tokens of reply"},
]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def tier(model: str, base_url: str | None, **fields: Any) -> ModelTier:
    return ModelTier.model_validate({"model": model, "base_url": base_url, **fields})


def complete(client: ModelClient, text: str, agent: str = "tester") -> Completion:
    async def call() -> Completion:
        async with client:
            return await client.complete(
                [SYSTEM, {"role": "user", "content": text}], agent=agent, deadline=None
            )

    return asyncio.run(call())


def fails(client: ModelClient, agent: str = "tester") -> ModelError:
    with pytest.raises(ModelError) as caught:
        complete(client, "anything", agent)
    return caught.value


@pytest.fixture
def serve_script(tmp_path: Path) -> Iterator[Any]:
    """Start a server for a script's top-level fields; each stops at the end of the test."""
    names = (tmp_path / f"model-{i}.yaml" for i in itertools.count())
    with ExitStack() as servers:

        def start(**script: Any) -> str:
            path = next(names)
            path.write_text(yaml.safe_dump({"model": "test", "rules": RULES, **script}))
            return servers.enter_context(model_server(path))

        yield start


def serve_for_module(
    tmp_path_factory: pytest.TempPathFactory, script: dict[str, Any]
) -> Iterator[str]:
    """A server for ``script`` while the module's tests run; yields its base URL."""
    path = tmp_path_factory.mktemp("script") / "model.yaml"
    path.write_text(yaml.safe_dump(script))
    with model_server(path) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve_for_module(tmp_path_factory, {"model": "test", "rules": RULES})


def test_completion_reports_text_usage_cost_and_scripted_label(url: str) -> None:
    client = ModelClient.for_tier(
        "main", tier("usage-model", url, price_in_per_mtok=3.0, price_out_per_mtok=15.0), environ={}
    )
    tokens_before = metric(
        "choreo_tokens_total", agent="writer", model="usage-model", direction="in"
    )
    calls_before = metric(
        "choreo_model_call_duration_seconds_count", agent="writer", model="usage-model"
    )

    completion = complete(client, "one two three", agent="writer")

    assert completion.text == "four tokens of reply"
    assert completion.scripted is True
    usage = completion.usage
    assert (usage.tokens_in, usage.tokens_out, usage.calls) == (7, 4, 1)
    assert usage.cost == pytest.approx((7 * 3.0 + 4 * 15.0) / 1e6)
    assert usage.model == "scripted:test"
    assert usage.latency_ms > 0
    assert (
        metric("choreo_tokens_total", agent="writer", model="usage-model", direction="in")
        == tokens_before + 7
    )
    assert metric("choreo_cost_usd_total", agent="writer", model="usage-model") == (
        pytest.approx(usage.cost)
    )
    assert (
        metric("choreo_model_call_duration_seconds_count", agent="writer", model="usage-model")
        == calls_before + 1
    )


def test_rate_limit_is_retried_after_the_servers_retry_after(serve_script: Any) -> None:
    base_url = serve_script(faults={"rate_limit": {"every": 2, "retry_after": 0.2}})
    retries = metric("choreo_model_retries_total", model="limited-model", status="rate_limited")
    # A tiny backoff: only an honoured Retry-After explains a wait of 0.2 s or more.
    client = ModelClient.for_tier(
        "limited", tier("limited-model", base_url), environ={}, backoff_s=0.001
    )

    async def two_calls() -> tuple[Completion, Completion]:
        async with client:
            first = await client.complete([SYSTEM], agent="tester", deadline=None)
            return first, await client.complete([SYSTEM], agent="tester", deadline=None)

    first, second = asyncio.run(two_calls())
    assert first.usage.calls == 1
    assert second.usage.calls == 2
    assert second.usage.latency_ms >= 200
    assert second.text == "four tokens of reply"
    assert (
        metric("choreo_model_retries_total", model="limited-model", status="rate_limited")
        == retries + 1
    )


def test_server_down_fails_after_retries_with_a_reason(serve_script: Any) -> None:
    base_url = serve_script(faults={"down": True})
    retries = metric("choreo_model_retries_total", model="down-model", status="http_503")
    errors = metric(
        "choreo_model_call_errors_total", agent="tester", model="down-model", reason="http_503"
    )
    client = ModelClient.for_tier(
        "down", tier("down-model", base_url, max_retries=2), environ={}, backoff_s=0.01
    )
    error = fails(client)
    assert error.reason == "http_503"
    assert error.attempts == 3
    assert "failed after 3 attempts" in str(error)
    assert "scripted outage" in str(error)
    assert (
        metric("choreo_model_retries_total", model="down-model", status="http_503") == retries + 2
    )
    assert (
        metric(
            "choreo_model_call_errors_total", agent="tester", model="down-model", reason="http_503"
        )
        == errors + 1
    )


def test_slow_server_times_out(serve_script: Any) -> None:
    base_url = serve_script(latency_ms=2000)
    client = ModelClient.for_tier(
        "slow",
        tier("slow-model", base_url, timeout_s=0.1, max_retries=1),
        environ={},
        backoff_s=0.01,
    )
    error = fails(client)
    assert (error.reason, error.attempts) == ("timeout", 2)


def test_refused_connection_is_retried_then_reported() -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        client = ModelClient.for_tier(
            "refused",
            tier("refused-model", f"http://127.0.0.1:{port}/v1", max_retries=1),
            environ={},
            backoff_s=0.01,
        )
        error = fails(client)
    assert (error.reason, error.attempts) == ("connection", 2)


def test_api_key_from_override_or_named_variable_and_401_not_retried(serve_script: Any) -> None:
    base_url = serve_script(api_key="sekret")
    keyed = tier("keyed-model", base_url, api_key_env="PROVIDER_KEY")

    error = fails(ModelClient.for_tier("keyed", keyed, environ={}))
    assert (error.reason, error.attempts) == ("http_401", 1)
    assert metric("choreo_model_retries_total", model="keyed-model", status="http_401") == 0

    from_named = ModelClient.for_tier("keyed", keyed, environ={"PROVIDER_KEY": "sekret"})
    assert complete(from_named, "hello").text == "four tokens of reply"
    overridden = ModelClient.for_tier(
        "keyed", keyed, environ={"PROVIDER_KEY": "wrong", "CHOREO_MODEL_KEYED_API_KEY": "sekret"}
    )
    assert complete(overridden, "hello").text == "four tokens of reply"


def test_environment_overrides_url_model_and_temperature(url: str) -> None:
    spec_tier = tier("spec-model", "http://127.0.0.1:9/v1", temperature=0.2)
    client = ModelClient.for_tier(
        "fast-local",
        spec_tier,
        environ={
            "CHOREO_MODEL_FAST_LOCAL_BASE_URL": url,
            "CHOREO_MODEL_FAST_LOCAL_MODEL": "override-model",
            "CHOREO_MODEL_FAST_LOCAL_PRICE_IN_PER_MTOK": "1",
            "CHOREO_MODEL_FAST_LOCAL_PRICE_OUT_PER_MTOK": "2",
            "CHOREO_MODEL_FAST_LOCAL_TEMPERATURE": "0.9",
        },
    )
    assert (client.model, client.temperature) == ("override-model", 0.9)
    assert complete(client, "hello").text == "override model seen"

    with pytest.raises(ModelConfigError, match="CHOREO_MODEL_FAST_LOCAL_TEMPERATURE"):
        ModelClient.for_tier(
            "fast-local", spec_tier, environ={"CHOREO_MODEL_FAST_LOCAL_TEMPERATURE": "hot"}
        )


def test_scripted_tier_needs_the_server_url(url: str) -> None:
    scripted = tier("writer-model", None, script="examples/model.yaml")
    with pytest.raises(ModelConfigError) as caught:
        ModelClient.for_tier("writer-tier", scripted, environ={})
    message = str(caught.value)
    assert "choreo model-server examples/model.yaml" in message
    assert "CHOREO_MODEL_WRITER_TIER_BASE_URL" in message

    client = ModelClient.for_tier(
        "writer-tier", scripted, environ={"CHOREO_MODEL_WRITER_TIER_BASE_URL": url}
    )
    assert complete(client, "hello").scripted is True


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 20 < (parse_retry_after(later) or 0) <= 30
    earlier = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(earlier) == 0.0


def test_concurrency_limit_queues_calls_beyond_the_tier_limit(serve_script: Any) -> None:
    base_url = serve_script(latency_ms=150)
    client = ModelClient.for_tier(
        "one-at-a-time", tier("serial-model", base_url, concurrency=1), environ={}
    )

    async def three_at_once() -> list[Completion]:
        async with client:
            return list(
                await asyncio.gather(
                    *(client.complete([SYSTEM], agent="tester", deadline=None) for _ in range(3))
                )
            )

    latencies = sorted(c.usage.latency_ms for c in asyncio.run(three_at_once()))
    # One request in flight at a time: the last caller waited for the two before it.
    assert latencies[-1] >= 3 * 150


# -- answers broken the ways real servers break them ---------------------------------------

BROKEN = [
    {"when": {"user": "^surrogate"}, "reply": "half an emoji ", "fault": "lone_surrogate"},
    {"when": {"user": "^gzip"}, "reply": "not compressed at all", "fault": "gzip_lie"},
    {"when": {"user": "^trickle"}, "reply": "slowly " * 20, "fault": "trickle"},
    {"when": {"user": "^null"}, "reply": "five words were billed here", "fault": "null_content"},
    {"when": {"user": "^huge"}, "reply": "0123456789", "repeat": 60_000},
]


@pytest.fixture(scope="module")
def broken_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve_for_module(tmp_path_factory, {"model": "broken", "rules": BROKEN})


def broken_client(base_url: str, **fields: Any) -> ModelClient:
    return ModelClient.for_tier(
        "broken", tier("broken-model", base_url, **fields), environ={}, backoff_s=0.01
    )


def test_a_lone_surrogate_in_the_answer_becomes_a_replacement_character(broken_url: str) -> None:
    text = complete(broken_client(broken_url), "surrogate please").text
    assert text == "half an emoji \ufffd"
    text.encode("utf-8")  # encodable: the step record can be written


def test_a_body_that_cannot_be_decoded_is_a_model_error(broken_url: str) -> None:
    with pytest.raises(ModelError) as caught:
        complete(broken_client(broken_url), "gzip please")
    assert caught.value.reason == "bad_response"
    assert "DecodingError" in str(caught.value)


def test_one_total_timeout_per_attempt_stops_a_trickling_answer(broken_url: str) -> None:
    # ~140 bytes at one per 0.2 s: every read is quick, the whole answer takes ~30 s.
    with pytest.raises(ModelError) as caught:
        complete(broken_client(broken_url, timeout_s=1, max_retries=1), "trickle please")
    assert (caught.value.reason, caught.value.attempts) == ("timeout", 2)


def test_the_traces_deadline_bounds_the_whole_call_with_its_retries(broken_url: str) -> None:
    client = broken_client(broken_url, timeout_s=1, max_retries=20)

    async def call() -> Completion:
        async with client:
            return await client.complete(
                [SYSTEM, {"role": "user", "content": "trickle please"}],
                agent="tester",
                deadline=datetime.now(UTC) + timedelta(seconds=2.5),
            )

    with pytest.raises(ModelError) as caught:
        asyncio.run(call())
    assert caught.value.reason == "deadline"
    assert 1 <= caught.value.attempts <= 3  # stopped long before its 21 attempts

    past = broken_client(broken_url)

    async def late() -> Completion:
        async with past:
            return await past.complete(
                [SYSTEM], agent="tester", deadline=datetime.now(UTC) - timedelta(seconds=1)
            )

    with pytest.raises(ModelError) as caught:
        asyncio.run(late())
    assert (caught.value.reason, caught.value.attempts) == ("deadline", 0)


def test_an_answer_without_content_still_counts_its_billed_tokens(broken_url: str) -> None:
    client = broken_client(broken_url, price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    before = metric("choreo_tokens_total", agent="billed", model="broken-model", direction="out")
    with pytest.raises(ModelError) as caught:
        complete(client, "null please", agent="billed")
    error = caught.value
    assert error.reason == "bad_response"
    assert "NoneType" in str(error)
    assert (error.usage.tokens_in, error.usage.tokens_out) == (6, 5)
    assert error.usage.cost == pytest.approx((6 * 1.0 + 5 * 2.0) / 1e6)
    assert (
        metric("choreo_tokens_total", agent="billed", model="broken-model", direction="out")
        == before + 5
    )


def test_a_huge_answer_is_read_whole(broken_url: str) -> None:
    assert len(complete(broken_client(broken_url), "huge please").text) == 600_000
