"""The model client's circuit against a real scripted server process that stays down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from choreo.models.client import ModelClient, ModelError
from choreo.models.ratelimit import CircuitState
from choreo.spec.mesh import ModelTier
from tests.tiers.support import server_stats


def test_the_circuit_opens_after_consecutive_failures_and_then_fails_fast_unsent(
    scripted: Callable[..., str],
) -> None:
    url = scripted(faults={"down": True})
    tier = ModelTier(
        model="down-model",
        base_url=url,
        max_retries=0,
        circuit_failures=2,
        circuit_cooldown_s=300,
        on_outage="fail",
    )
    client = ModelClient.for_tier("fragile", tier, environ={})

    async def three_calls() -> list[ModelError]:
        errors = []
        async with client:
            for _ in range(3):
                with pytest.raises(ModelError) as caught:
                    await client.complete(
                        [{"role": "user", "content": "hi"}], agent="tester", deadline=None
                    )
                errors.append(caught.value)
        return errors

    errors = asyncio.run(three_calls())
    assert [(e.reason, e.attempts) for e in errors] == [
        ("http_503", 1),
        ("http_503", 1),
        ("circuit_open", 0),
    ]
    assert "circuit of tier 'fragile' is open after 2 consecutive failures" in str(errors[2])
    assert server_stats(url)["unavailable"] == 2  # the third call never reached the server
    assert REGISTRY.get_sample_value("choreo_model_circuit_state", {"tier": "fragile"}) == (
        CircuitState.OPEN
    )
