"""Flow control of one model tier: token buckets, a tier-wide pause, a circuit breaker.

Providers limit requests per second and tokens per minute, and tell a client to back off with
``429`` + ``Retry-After``; a tier that is down should be failed fast rather than hammered.
These are per tier and per process (every agent of a process shares its tier's client), and
take an injectable clock so their arithmetic is tested without waiting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from enum import IntEnum

from choreo.spec.mesh import ModelTier

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class TokenBucket:
    """``rate`` units per second, at most ``capacity`` saved up.

    ``reserve`` takes its units at once, going into debt when the bucket is short, and says how
    long the caller must wait for the debt to be repaid. Reserving before waiting serves callers
    in arrival order, and a request larger than the capacity waits instead of never fitting.
    """

    def __init__(self, rate: float, capacity: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("a token bucket needs a positive rate and capacity")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._level = capacity
        self._stamp = clock()

    @property
    def level(self) -> float:
        """Units available now (negative while in debt)."""
        self._refill()
        return self._level

    def reserve(self, amount: float = 1.0) -> float:
        """Take ``amount`` units; return the seconds to wait before using them."""
        self._refill()
        self._level -= amount
        return max(0.0, -self._level / self.rate)

    def settle(self, amount: float) -> None:
        """Take (positive) or give back (negative) units once the real cost is known."""
        self._refill()
        self._level = min(self.capacity, self._level - amount)

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate)
        self._stamp = now


class CircuitState(IntEnum):
    """Values of the ``choreo_model_circuit_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Opens after ``failures`` consecutive failed requests; half-opens after ``cooldown_s``.

    While open every request is refused at once. Half-open lets one probe through (others are
    refused): its success closes the circuit, its failure opens it for another cool-down. A
    probe that never reports (its caller was cancelled) is replaced after a cool-down.
    """

    def __init__(self, failures: int, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._since = clock()  # when it opened, or when the current probe started

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    def retry_in(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when not open)."""
        if self._state is CircuitState.CLOSED:
            return 0.0
        return max(0.0, self._since + self.cooldown_s - self._clock())

    def holding(self) -> bool:
        """Is the tier treated as down now: open and cooling down, or a probe in flight?"""
        return self._state is not CircuitState.CLOSED and self.retry_in() > 0

    def allow(self) -> bool:
        """May a request go out now? Grants the half-open probe to the first caller."""
        if self._state is CircuitState.CLOSED:
            return True
        if self.retry_in() > 0:
            return False
        self._state = CircuitState.HALF_OPEN
        self._since = self._clock()
        return True

    def success(self) -> None:
        self._state = CircuitState.CLOSED
        self._consecutive = 0

    def failure(self) -> None:
        self._consecutive += 1
        if self._state is CircuitState.HALF_OPEN or self._consecutive >= self.failures:
            self._state = CircuitState.OPEN
            self._since = self._clock()


class TierGate:
    """Admission to one tier: a ``Retry-After`` pause shared by every caller, then the
    request and token buckets the tier declares (none: no waiting)."""

    def __init__(
        self, tier: ModelTier, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._paused_until = clock()
        self.requests = (
            TokenBucket(
                tier.requests_per_s, tier.burst or max(1, math.ceil(tier.requests_per_s)), clock
            )
            if tier.requests_per_s
            else None
        )
        self.tokens = (
            TokenBucket(tier.tokens_per_min / 60, tier.tokens_per_min, clock)
            if tier.tokens_per_min
            else None
        )
        self.breaker = CircuitBreaker(tier.circuit_failures, tier.circuit_cooldown_s, clock)

    def pause(self, seconds: float) -> None:
        """Hold every caller of the tier for ``seconds``: the provider asked for it."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def admit(self, estimated_tokens: int) -> None:
        """Wait out any pause, then take one request and ``estimated_tokens`` from the buckets."""
        while (paused := self._paused_until - self._clock()) > 0:
            await self._sleep(paused)
        wait = 0.0
        if self.requests is not None:
            wait = self.requests.reserve(1)
        if self.tokens is not None:
            wait = max(wait, self.tokens.reserve(estimated_tokens))
        if wait > 0:
            await self._sleep(wait)

    def settle(self, estimated_tokens: int, used_tokens: int) -> None:
        """Charge the token bucket what the call really used instead of the estimate."""
        if self.tokens is not None:
            self.tokens.settle(used_tokens - estimated_tokens)
