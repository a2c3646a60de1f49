"""Token bucket, circuit breaker and tier gate arithmetic, on a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest

from choreo.models.ratelimit import CircuitBreaker, CircuitState, TierGate, TokenBucket
from choreo.spec.mesh import ModelTier


class FakeClock:
    """A monotonic clock that moves only when told to (or when a fake sleep 'waits')."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- token bucket ------------------------------------------------------------------------------


def test_a_full_bucket_serves_its_burst_at_once_then_paces_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, capacity=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.5)  # one unit short at 2 units/s
    assert bucket.reserve() == pytest.approx(1.0)  # callers queue in arrival order


def test_the_bucket_refills_with_time_up_to_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, capacity=5, clock=clock)
    bucket.reserve(5)
    clock.advance(0.2)
    assert bucket.level == pytest.approx(2.0)
    clock.advance(60)
    assert bucket.level == 5  # never more than the capacity


def test_a_request_larger_than_the_capacity_waits_instead_of_never_fitting() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=100.0, capacity=1000, clock=clock)  # 6000 tokens/min
    assert bucket.reserve(1500) == pytest.approx(5.0)


def test_settle_charges_the_real_cost_or_refunds_the_estimate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, capacity=100, clock=clock)
    bucket.reserve(40)
    bucket.settle(25)  # used 25 more than estimated
    assert bucket.level == pytest.approx(35)
    bucket.settle(-1000)  # a refund never overfills
    assert bucket.level == 100


def test_a_bucket_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, capacity=1)


# -- circuit breaker -----------------------------------------------------------------------------


def test_the_circuit_opens_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        breaker.failure()
    breaker.success()  # a success in between resets the count
    breaker.failure()
    breaker.failure()
    assert breaker.state is CircuitState.CLOSED and breaker.allow()
    breaker.failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(10)


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown_s=5, clock=clock)
    breaker.failure()
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert breaker.allow()  # the probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert not breaker.allow()  # everyone else still fails fast
    breaker.success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow()


def test_a_failed_probe_opens_the_circuit_for_another_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=3, cooldown_s=5, clock=clock)
    for _ in range(3):
        breaker.failure()
    clock.advance(5)
    assert breaker.allow()
    breaker.failure()  # one failure suffices when half-open
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_in() == pytest.approx(5)


def test_a_probe_that_never_reports_is_replaced_after_a_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown_s=5, clock=clock)
    breaker.failure()
    clock.advance(5)
    assert breaker.allow()
    clock.advance(5)
    assert breaker.allow()


# -- the tier gate -------------------------------------------------------------------------------


def _gate(clock: FakeClock, **limits: float) -> TierGate:
    tier = ModelTier.model_validate({"model": "m", "base_url": "http://127.0.0.1:9/v1", **limits})
    return TierGate(tier, clock=clock, sleep=clock.sleep)


def test_the_gate_paces_requests_and_tokens_by_the_tighter_bucket() -> None:
    clock = FakeClock()
    gate = _gate(clock, requests_per_s=10, burst=2, tokens_per_min=600)  # 10 tokens/s

    async def admit_three() -> None:
        for _ in range(3):
            await gate.admit(estimated_tokens=300)

    asyncio.run(admit_three())
    # 600 tokens in the bucket: two calls at once, the third waits 300 tokens / 10 per s.
    assert clock.slept == [pytest.approx(30.0)]


def test_a_retry_after_pause_holds_every_caller_of_the_tier() -> None:
    clock = FakeClock()
    gate = _gate(clock)
    gate.pause(2.5)
    gate.pause(1.0)  # a shorter pause never shortens the longer one
    asyncio.run(gate.admit(estimated_tokens=10))
    assert clock.slept == [pytest.approx(2.5)]
    asyncio.run(gate.admit(estimated_tokens=10))
    assert clock.slept == [pytest.approx(2.5)]  # no limits declared: no more waiting


def test_a_tier_is_held_while_open_or_probing_and_free_once_a_probe_may_go() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failures=1, cooldown_s=5, clock=clock)
    assert not breaker.holding()
    breaker.failure()
    assert breaker.holding()  # open, cooling down
    clock.advance(5)
    assert not breaker.holding()  # a probe may go: an agent lets one record in for it
    assert breaker.allow()
    assert breaker.holding()  # the probe is in flight
    breaker.success()
    assert not breaker.holding()
