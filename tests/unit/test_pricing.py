"""The cost of a call's tokens (choreo.models.pricing) and the assembly of a streamed answer
(choreo.models.providers), for any counts and any way a stream is cut into chunks."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreo.budget.allowance import Spending
from choreo.models.pricing import cost_usd
from choreo.models.providers.openai import ChatStream
from choreo.schemas.records import Allowance
from choreo.spec.mesh import ModelTier

counts = st.integers(min_value=0, max_value=10**7)
prices = st.floats(min_value=0, max_value=100, allow_nan=False)


@given(counts, counts, counts, counts, counts, prices, prices)
def test_without_prices_of_their_own_cached_and_reasoning_tokens_cost_the_plain_price(
    tokens_in: int,
    tokens_out: int,
    cached: int,
    written: int,
    reasoning: int,
    price_in: float,
    price_out: float,
) -> None:
    tier = ModelTier(
        base_url="http://x", model="m", price_in_per_mtok=price_in, price_out_per_mtok=price_out
    )

    cost = cost_usd(
        tier, tokens_in, tokens_out, cached=cached, cache_write=written, reasoning=reasoning
    )

    assert cost == pytest.approx((tokens_in * price_in + tokens_out * price_out) / 1e6)


@given(counts, counts, counts, counts, counts, prices, prices, prices, prices, prices)
def test_a_cost_is_never_below_zero_nor_above_every_token_at_the_dearest_price(
    tokens_in: int,
    tokens_out: int,
    cached: int,
    written: int,
    reasoning: int,
    price_in: float,
    price_cached: float,
    price_write: float,
    price_out: float,
    price_reasoning: float,
) -> None:
    tier = ModelTier(
        base_url="http://x",
        model="m",
        price_in_per_mtok=price_in,
        price_cached_in_per_mtok=price_cached,
        price_cache_write_per_mtok=price_write,
        price_out_per_mtok=price_out,
        price_reasoning_out_per_mtok=price_reasoning,
    )

    cost = cost_usd(
        tier, tokens_in, tokens_out, cached=cached, cache_write=written, reasoning=reasoning
    )

    dearest = max(price_in, price_cached, price_write, price_out, price_reasoning)
    assert 0 <= cost <= (tokens_in + tokens_out) * dearest / 1e6 * (1 + 1e-9)


@given(st.text(), st.text(min_size=2), st.lists(st.integers(0, 200), max_size=6))
def test_a_chat_stream_cut_into_any_chunks_assembles_the_same_answer(
    text: str, arguments: str, cuts: list[int]
) -> None:
    def pieces(value: str) -> list[str]:
        points = sorted({0, len(value), *(c % (len(value) + 1) for c in cuts)})
        return [value[a:b] for a, b in itertools.pairwise(points)]

    stream = ChatStream()
    for piece in pieces(text):
        stream.feed(json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}))
    start = {"index": 0, "id": "call_1", "function": {"name": "look", "arguments": ""}}
    stream.feed(json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [start]}}]}))
    for piece in pieces(arguments):
        call = {"index": 0, "function": {"arguments": piece}}
        stream.feed(json.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}))
    stream.feed(json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    stream.feed("[DONE]")

    message = stream.payload()["choices"][0]["message"]
    assert stream.complete()
    assert (message["content"] or "") == text
    assert message["tool_calls"][0]["function"] == {"name": "look", "arguments": arguments}


def test_a_cost_allowance_caps_the_answer_at_the_dearest_price_a_token_may_cost() -> None:
    plain = ModelTier(base_url="http://x", model="m", price_out_per_mtok=10.0)
    reasoning = plain.model_copy(update={"price_reasoning_out_per_mtok": 20.0})
    allowance = Allowance(cost=0.001)  # a thousandth of a dollar: 100 tokens at 10 $/Mtok

    caps = [Spending(allowance).cap([], tier, None) for tier in (plain, reasoning)]

    assert caps == [100, 50]  # every answer token might be a reasoning one
