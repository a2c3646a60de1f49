"""A tier says how its model takes a request: which field carries the output-token limit,
whether a temperature is sent at all; a model replaced by environment brings its prices."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from choreo.model_server import model_server
from choreo.models.client import Completion, ModelClient, ModelConfigError, ModelError
from choreo.spec.mesh import ModelTier

MESSAGES: list[Any] = [
    {"role": "system", "content": "You answer."},
    {"role": "user", "content": "hello"},
]


@pytest.fixture(scope="module")
def strict_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A model that refuses what newer OpenAI models refuse."""
    path = tmp_path_factory.mktemp("strict") / "model.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": "strict",
                "rules": [{"reply": "fine"}],
                "faults": {"rejects": ["temperature", "max_tokens"]},
            }
        )
    )
    with model_server(path) as base_url:
        yield base_url


def _complete(tier: ModelTier, **options: Any) -> Completion:
    async def call() -> Completion:
        async with ModelClient(tier, name="t") as client:
            return await client.complete(MESSAGES, agent="tester", deadline=None, **options)

    return asyncio.run(call())


def test_a_tier_sends_max_completion_tokens_and_no_temperature(strict_url: str) -> None:
    tier = ModelTier(
        model="strict",
        base_url=strict_url,
        temperature=None,
        max_tokens_field="max_completion_tokens",
    )
    assert _complete(tier, max_tokens=50, temperature=0.0).text == "fine"


def test_the_default_tier_sends_what_a_strict_model_refuses(strict_url: str) -> None:
    with pytest.raises(ModelError) as caught:
        _complete(ModelTier(model="strict", base_url=strict_url, max_retries=0), max_tokens=50)
    assert caught.value.reason == "http_400"


def test_a_model_override_without_prices_is_refused(tmp_path: Path) -> None:
    tier = ModelTier(
        model="small",
        base_url="http://127.0.0.1:9/v1",
        price_in_per_mtok=0.15,
        price_out_per_mtok=0.6,
    )
    with pytest.raises(ModelConfigError) as caught:
        ModelClient.for_tier("fast", tier, environ={"CHOREO_MODEL_FAST_MODEL": "big"})
    message = str(caught.value)
    assert "CHOREO_MODEL_FAST_PRICE_IN_PER_MTOK" in message
    assert "CHOREO_MODEL_FAST_PRICE_OUT_PER_MTOK" in message

    priced = ModelClient.for_tier(
        "fast",
        tier,
        environ={
            "CHOREO_MODEL_FAST_MODEL": "big",
            "CHOREO_MODEL_FAST_PRICE_IN_PER_MTOK": "2.5",
            "CHOREO_MODEL_FAST_PRICE_OUT_PER_MTOK": "10",
        },
    )
    assert (priced.model, priced.tier.price_in_per_mtok, priced.tier.price_out_per_mtok) == (
        "big",
        2.5,
        10.0,
    )
    same = ModelClient.for_tier("fast", tier, environ={"CHOREO_MODEL_FAST_MODEL": "small"})
    assert same.tier.price_in_per_mtok == 0.15  # the same model keeps its prices
