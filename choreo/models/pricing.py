"""What a model call cost: tokens at the tier's prices, cached and reasoning tokens at their own.

Providers count differently; every profile (choreo.models.providers) reports its answer as
``Counts`` in one convention: ``tokens_in`` is the whole prompt, of which ``cached`` were read
from the provider's prompt cache and ``cache_write`` written to it; ``tokens_out`` is the
whole answer, of which ``reasoning`` were the model's hidden reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass

from choreo.spec.mesh import ModelTier


@dataclass(frozen=True)
class Counts:
    """Token counts an answer reported; ``None`` where it reported none it could use."""

    tokens_in: int | None
    tokens_out: int | None
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0


def cost_usd(
    tier: ModelTier,
    tokens_in: int,
    tokens_out: int,
    *,
    cached: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
) -> float:
    """US dollars for one call: plain input and output at the tier's prices, cached input,
    cache writes and reasoning output at theirs (each defaulting to the plain price).

    The parts are clamped to their totals, so a provider reporting more cached tokens than
    prompt tokens is never priced below zero.
    """
    cached = min(cached, tokens_in)
    cache_write = min(cache_write, tokens_in - cached)
    reasoning = min(reasoning, tokens_out)
    price_in, price_out = tier.price_in_per_mtok, tier.price_out_per_mtok
    cached_price = (
        price_in if tier.price_cached_in_per_mtok is None else tier.price_cached_in_per_mtok
    )
    write_price = (
        price_in if tier.price_cache_write_per_mtok is None else tier.price_cache_write_per_mtok
    )
    reasoning_price = (
        price_out
        if tier.price_reasoning_out_per_mtok is None
        else tier.price_reasoning_out_per_mtok
    )
    return (
        (tokens_in - cached - cache_write) * price_in
        + cached * cached_price
        + cache_write * write_price
        + (tokens_out - reasoning) * price_out
        + reasoning * reasoning_price
    ) / 1e6
