"""A step's allowance, enforced at the model call before anything is spent.

The keeper grants each step an :class:`~choreo.schemas.records.Allowance` (see
``choreo.budget.reserve``); the agent service opens a :func:`spending` scope for the step, and
every model call made inside it (the main call, a summarizer's, a router's) asks
:meth:`Spending.cap` first:

- ``max_tokens`` is capped to the tokens left minus the prompt's estimated tokens;
- a call whose smallest possible cost (the prompt at the tier's input price) is more than the
  cost left is not made, nor one with no room for a single output token.

A call refused this way raises :class:`OverBudget`; the step becomes a refusal and the trace
ends ``halted`` with the figures. The prompt is counted with the estimate of
``choreo.models.context.estimate_tokens`` (about four characters a token, plus three a
message), which is at least the count of the usual tokenizers for prose.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from choreo.budget.tokens import estimate_tokens
from choreo.schemas import Usage
from choreo.schemas.errors import BudgetExhausted
from choreo.schemas.records import Allowance

if TYPE_CHECKING:  # a tier is only read here, so catching OverBudget loads no spec models
    from choreo.spec.mesh import ModelTier


class OverBudget(BudgetExhausted, RuntimeError):
    """A model call the step's allowance cannot pay for; ``spent`` is what the step already
    used in earlier calls (it is still counted). ``rule`` names the budget (``budget.tokens``,
    ``budget.cost``) and ``details`` gives its figures.

    A ``BudgetExhausted``: to the step it is the same refusal, only found at the model call
    (against the step's share of the budget) rather than before it (against the trace's)."""

    def __init__(self, rule: str, details: dict[str, Any], spent: Usage) -> None:
        figures = ", ".join(f"{k} {v}" for k, v in details.items())
        super().__init__(f"{rule}: model call not made ({figures})")
        self.rule = rule
        self.details = details
        self.spent = spent


class Spending:
    """What one step has spent against its allowance; ``None`` limits are unlimited."""

    def __init__(self, allowance: Allowance) -> None:
        self.allowance = allowance
        self.spent = Usage()

    def cap(
        self, messages: Sequence[Mapping[str, str]], tier: ModelTier, max_tokens: int | None
    ) -> int | None:
        """The ``max_tokens`` to send for this call; raises OverBudget if none fits."""
        prompt = estimate_tokens(messages)
        caps = [] if max_tokens is None else [max_tokens]
        if self.allowance.tokens is not None:
            left = self.allowance.tokens - self.spent.tokens_in - self.spent.tokens_out
            if left - prompt < 1:
                raise OverBudget("budget.tokens", {"left": left, "prompt": prompt}, self.spent)
            caps.append(left - prompt)
        if self.allowance.cost is not None:
            left_cost = self.allowance.cost - self.spent.cost
            # the dearest price a token may be billed at (a cache write, a reasoning token),
            # so the budget holds whatever part of the call the provider prices apart
            price_in = max(tier.price_in_per_mtok, tier.price_cache_write_per_mtok or 0.0)
            price_out = max(tier.price_out_per_mtok, tier.price_reasoning_out_per_mtok or 0.0)
            least = prompt * price_in / 1e6
            if price_out > 0:
                # in millionths of a dollar, rounded so float noise never costs a token
                room = math.floor(round((left_cost - least) * 1e6 / price_out, 6))
                if room < 1:
                    raise OverBudget(
                        "budget.cost",
                        {"left": round(left_cost, 9), "least": round(least, 9)},
                        self.spent,
                    )
                caps.append(room)
            elif least > left_cost:
                raise OverBudget(
                    "budget.cost",
                    {"left": round(left_cost, 9), "least": round(least, 9)},
                    self.spent,
                )
        return min(caps) if caps else None

    def spend(self, usage: Usage) -> None:
        self.spent = Usage(
            tokens_in=self.spent.tokens_in + usage.tokens_in,
            tokens_out=self.spent.tokens_out + usage.tokens_out,
            cost=self.spent.cost + usage.cost,
            calls=self.spent.calls + usage.calls,
        )


_current: ContextVar[Spending | None] = ContextVar("choreo_spending", default=None)


def current() -> Spending | None:
    """The spending scope of the step running in this task, if any."""
    return _current.get()


@contextmanager
def spending(allowance: Allowance | None) -> Iterator[Spending | None]:
    """Every model call in the block is capped by ``allowance`` (no scope when ``None``)."""
    scope = Spending(allowance) if allowance is not None else None
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
