"""A trace's budgets, held by the keeper before anything is spent.

Every event the keeper forwards is a step about to run, once per agent that subscribes to it.
Before forwarding, the keeper reserves for each of those steps one hop and an equal share of
the tokens and cost left: what is left is the budget minus the totals folded so far minus the
reservations of steps still in flight. The share travels with the event as its
:class:`Allowance`; the agent caps its model calls to it (``choreo.budget.allowance``). When
the step's output is folded its reservation is released and its real usage charged. So steps
running at once (fan-out) never spend the same remainder twice, and a trace's totals never
pass its budget as long as the model honours ``max_tokens``.

When no share is left (the hop budget would be passed, or no token or cent remains), the keeper
does not forward: the trace ends ``halted`` with the figures. A fold whose totals went over a
budget anyway (a provider that ignored ``max_tokens``) also halts the trace, never completes it.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from choreo.schemas import Budget, Envelope, Snapshot, Totals
from choreo.schemas.records import Allowance


class Exhausted(msgspec.Struct, kw_only=True):
    """Why a budget stops a trace: the rule (``budget.hops`` ...), and the figures."""

    rule: str
    details: dict[str, Any]

    @property
    def reason(self) -> str:
        """The terminal record's reason: the rule, then every figure."""
        figures = "; ".join(
            f"{name} " + ", ".join(f"{k} {v}" for k, v in values.items())
            for name, values in self.details.items()
        )
        return f"{self.rule}: {figures}"


def reservation_key(event_id: str, agent: str) -> str:
    return f"{event_id}/{agent}"


def spent_tokens(totals: Totals) -> int:
    return totals.tokens_in + totals.tokens_out


def over(budget: Budget, totals: Totals) -> Exhausted | None:
    """Every limit ``totals`` went over (reaching a limit is allowed), first one as the rule."""
    found: dict[str, dict[str, Any]] = {}
    if budget.max_hops is not None and totals.hops > budget.max_hops:
        found["hops"] = {"used": totals.hops, "limit": budget.max_hops}
    if budget.max_tokens is not None and spent_tokens(totals) > budget.max_tokens:
        found["tokens"] = {"used": spent_tokens(totals), "limit": budget.max_tokens}
    if budget.max_cost is not None and totals.cost > budget.max_cost:
        found["cost"] = {"used": totals.cost, "limit": budget.max_cost}
    if not found:
        return None
    return Exhausted(rule=f"budget.{next(iter(found))}", details=found)


def allot(
    snapshot: Snapshot, event_id: str, agents: list[str]
) -> tuple[Snapshot, Allowance] | Exhausted:
    """Reserve one step for each of ``agents`` (the subscribers of one forwarded event).

    Returns the snapshot with the reservations and the allowance each step gets, or why the
    budget cannot pay for them. No agents (an event only a join waits for) reserves nothing.
    """
    if not agents:
        return snapshot, Allowance()
    budget, totals, reserved = snapshot.budget, snapshot.totals, snapshot.reserved.values()
    count = len(agents)
    if (
        budget.max_hops is not None
        and totals.hops + len(snapshot.reserved) + count > budget.max_hops
    ):
        return Exhausted(
            rule="budget.hops",
            details={
                "hops": {
                    "used": totals.hops,
                    "in_flight": len(snapshot.reserved),
                    "next": count,
                    "limit": budget.max_hops,
                }
            },
        )
    tokens: int | None = None
    if budget.max_tokens is not None:
        held = sum(a.tokens or 0 for a in reserved)
        tokens = (budget.max_tokens - spent_tokens(totals) - held) // count
        if tokens < 1:
            return Exhausted(
                rule="budget.tokens",
                details={
                    "tokens": {
                        "used": spent_tokens(totals),
                        "in_flight": held,
                        "limit": budget.max_tokens,
                    }
                },
            )
    cost: float | None = None
    if budget.max_cost is not None:
        held_cost = _ceil12(sum(a.cost or 0.0 for a in reserved))
        cost = _floor12((budget.max_cost - totals.cost - held_cost) / count)
        if cost <= 0:
            return Exhausted(
                rule="budget.cost",
                details={
                    "cost": {"used": totals.cost, "in_flight": held_cost, "limit": budget.max_cost}
                },
            )
    share = Allowance(tokens=tokens, cost=cost)
    held_now = {**snapshot.reserved, **{reservation_key(event_id, a): share for a in agents}}
    return msgspec.structs.replace(snapshot, reserved=held_now), share


def release(snapshot: Snapshot, step: Envelope) -> Snapshot:
    """The snapshot without the reservation of the step that produced ``step``."""
    if step.causation_id is None:
        return snapshot
    key = reservation_key(step.causation_id, step.source)
    if key not in snapshot.reserved:
        return snapshot
    return msgspec.structs.replace(
        snapshot, reserved={k: v for k, v in snapshot.reserved.items() if k != key}
    )


def _floor12(value: float) -> float:
    """``value`` rounded down to 1e-12 dollars, so shares never sum above what is left."""
    return math.floor(value * 1e12) / 1e12


def _ceil12(value: float) -> float:
    """``value`` rounded up to 1e-12 dollars: what is held is never counted short."""
    return math.ceil(value * 1e12) / 1e12
