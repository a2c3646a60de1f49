"""What is left of a trace's budgets for one step, before it spends anything more.

The keeper forwards each event with the trace's running totals (``Envelope.totals``); what
the step itself has spent so far is added, so a step that calls its model several times (a
tool loop, a Python agent) sees its own spending too. ``None`` means unlimited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from choreo.schemas import Envelope, Usage


@dataclass(frozen=True)
class BudgetLeft:
    """What one step may still spend of its trace's budgets; ``None`` is unlimited.

    ``hops`` counts steps after this one; ``tokens`` is input plus output tokens; ``cost``
    is US dollars; ``seconds`` is the wall-clock time to the trace's deadline.
    """

    hops: int | None
    tokens: int | None
    cost: float | None
    seconds: float | None

    def exhausted(self) -> str | None:
        """Which budget is used up (a reason for the step's refusal), or ``None``."""
        if self.tokens is not None and self.tokens <= 0:
            return "token budget exhausted"
        if self.cost is not None and self.cost <= 0:
            return "cost budget exhausted"
        if self.seconds is not None and self.seconds <= 0:
            return "deadline passed"
        return None

    def cap(self, max_tokens: int | None) -> int | None:
        """A model call's ``max_tokens``: the caller's, no more than the tokens left."""
        if self.tokens is None:
            return max_tokens
        return self.tokens if max_tokens is None else min(max_tokens, self.tokens)


def left(event: Envelope, spent: Usage, now: datetime | None = None) -> BudgetLeft:
    """What is left for the step handling ``event`` after it spent ``spent``."""
    budget = event.budget
    totals = event.totals
    used_tokens = spent.tokens_in + spent.tokens_out
    used_cost = spent.cost
    if totals is not None:
        used_tokens += totals.tokens_in + totals.tokens_out
        used_cost += totals.cost
    seconds = None
    if budget.deadline is not None:
        seconds = (budget.deadline - (now or datetime.now(UTC))).total_seconds()
    return BudgetLeft(
        hops=None if budget.max_hops is None else budget.max_hops - (event.hop + 1),
        tokens=None if budget.max_tokens is None else budget.max_tokens - used_tokens,
        cost=None if budget.max_cost is None else budget.max_cost - used_cost,
        seconds=seconds,
    )


def plus(first: Usage, second: Usage) -> Usage:
    """Two calls' usage as one step's: sums, and the later call's model."""
    return Usage(
        tokens_in=first.tokens_in + second.tokens_in,
        tokens_out=first.tokens_out + second.tokens_out,
        cost=first.cost + second.cost,
        latency_ms=first.latency_ms + second.latency_ms,
        model=second.model or first.model,
        calls=first.calls + second.calls,
        estimated=first.estimated or second.estimated,
        tokens_cached=first.tokens_cached + second.tokens_cached,
        tokens_cache_write=first.tokens_cache_write + second.tokens_cache_write,
        tokens_reasoning=first.tokens_reasoning + second.tokens_reasoning,
    )
