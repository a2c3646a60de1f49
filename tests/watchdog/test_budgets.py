"""Budgets held before spending: the keeper's reservations, the agent's cap, silent endpoints."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from choreo.agent.step import outcome, step_event
from choreo.budget import allowance
from choreo.budget import reserve as budget
from choreo.keeper.batch import Batch
from choreo.keeper.machine import Keeper
from choreo.model_server import model_server
from choreo.models.client import ModelClient
from choreo.schemas import (
    Budget,
    ControlVerdict,
    Envelope,
    Escalation,
    HopRecord,
    Snapshot,
    Task,
    TerminalResult,
    Totals,
    Usage,
    decode,
    encode,
)
from choreo.schemas.records import STEP_REFUSED, Allowance
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, ModelTier
from tests.unit.support import consumed

TOPICS = Topics("budgets")

#: Every step of ``a`` and ``b`` emits an event both of them subscribe to: the hop budget must
#: count steps, not the depth of the chain.
FAN_OUT: dict[str, Any] = {
    "name": "fan",
    "entry": ["work"],
    "state": {"notes": {"reducer": "append"}},
    "models": {"m": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}},
    "agents": [
        {
            "name": name,
            "subscribe": ["work"],
            "persona": "You work.",
            "model": "m",
            "writes": {"notes": "{output}"},
            "routes": [{"when": "^DONE", "finish": True, "output": "notes"}, {"emit": "work"}],
        }
        for name in ("a", "b")
    ],
}
SPEC = MeshSpec.model_validate(FAN_OUT)


class Driver:
    """The real keeper, fed records in log order; agents answer with a fixed text and usage."""

    def __init__(self) -> None:
        self.keeper = Keeper(SPEC, TOPICS)
        self.offsets = itertools.count()
        self.clock = itertools.count(1_700_000_000_000, 1000)
        self.sent: list[tuple[str, bytes]] = []

    def feed(self, topic: str, record: Envelope | ControlVerdict) -> list[tuple[str, bytes]]:
        batch = Batch()
        handler = (
            self.keeper.control
            if topic == TOPICS.control
            else self.keeper.intake
            if topic == TOPICS.tasks
            else self.keeper.apply
        )
        value = consumed(
            topic,
            next(self.offsets),
            encode(record),
            key=record.trace_id,
            timestamp_ms=next(self.clock),
        )
        assert handler(value, batch) is None
        out = [(t, v) for t, _, v, _ in batch.sends + batch.last]
        self.sent += out
        return out

    def run(self, task: Task, text: str = "more", usage: Usage | None = None) -> None:
        """Admit ``task`` and answer every forwarded event until the trace ends."""
        queue = self.feed(TOPICS.tasks, task)
        while queue:
            topic, value = queue.pop(0)
            if topic == TOPICS.outbox:
                queue += self.feed(topic, decode(value, Envelope))
            elif topic == TOPICS.event("work"):
                event = decode(value, Envelope)
                for agent in ("a", "b"):
                    step = outcome(SPEC.agent(agent), event, text, usage or Usage(), [])
                    queue.append((TOPICS.outbox, encode(step)))

    def records(self, topic: str, kind: type[Any]) -> list[Any]:
        return [decode(v, kind) for t, v in self.sent if t == topic]


def test_the_hop_budget_counts_every_step_across_a_fan_out() -> None:
    driver = Driver()
    driver.run(Task(input="go", trace_id="t", budget=Budget(max_hops=6)))
    (result,) = driver.records(TOPICS.results, TerminalResult)
    # three steps folded, three in flight, the next event starts two more: 8 > 6
    assert (result.status, result.reason) == (
        "halted",
        "budget.hops: hops used 3, in_flight 3, next 2, limit 6",
    )
    assert result.usage.hops == 3
    assert len(driver.records(TOPICS.hops, HopRecord)) == 3
    (escalation,) = driver.records(TOPICS.escalations, Escalation)
    assert escalation.reason == result.reason and escalation.evidence["rule"] == "budget.hops"


def test_fan_out_steps_share_what_is_left_and_the_trace_never_ends_over_budget() -> None:
    driver = Driver()
    driver.run(
        Task(input="go", trace_id="t", budget=Budget(max_tokens=1000, max_cost=0.01)),
        usage=Usage(tokens_in=100, tokens_out=90, cost=0.001),
    )
    allowances = [
        decode(v, Envelope).allowance for t, v in driver.sent if t == TOPICS.event("work")
    ]
    assert allowances[0] == Allowance(tokens=500, cost=0.005)  # two steps run at once
    (result,) = driver.records(TOPICS.results, TerminalResult)
    assert result.status == "halted" and result.reason.startswith("budget.")
    assert result.usage.tokens_in + result.usage.tokens_out <= 1000
    assert result.usage.cost <= 0.01


def test_a_step_that_spent_over_its_share_halts_the_trace_instead_of_completing_it() -> None:
    driver = Driver()
    driver.run(
        Task(input="go", trace_id="t", budget=Budget(max_tokens=2000)),
        text="DONE",
        usage=Usage(tokens_in=100, tokens_out=50_000),
    )
    (result,) = driver.records(TOPICS.results, TerminalResult)
    assert (result.status, result.usage.tokens_out) == ("halted", 50_000)
    assert "tokens used 50100, limit 2000" in (result.reason or "")


def test_a_halt_verdict_is_not_a_hop_and_a_late_refusal_adds_no_second_escalation() -> None:
    driver = Driver()
    queue = driver.feed(TOPICS.tasks, Task(input="go", trace_id="t"))
    queue = driver.feed(TOPICS.outbox, decode(queue[0][1], Envelope))
    event = next(decode(v, Envelope) for t, v in queue if t == TOPICS.event("work"))
    driver.feed(TOPICS.outbox, outcome(SPEC.agent("a"), event, "more", Usage(), []))
    halt = ControlVerdict(
        verdict_id="v",
        trace_id="t",
        action="halt",
        reason="loop.stuck",
        evidence={"rule": "stuck", "hops": [1]},
        source="watchdog",
    )
    for record in driver.feed(TOPICS.control, halt):
        driver.feed(TOPICS.outbox, decode(record[1], Envelope))
    refusal = step_event(SPEC.agent("b"), event, STEP_REFUSED, payload={"reason": "late"})
    driver.feed(TOPICS.outbox, refusal)
    (result,) = driver.records(TOPICS.results, TerminalResult)
    assert (result.status, result.reason, result.usage.hops) == ("halted", "loop.stuck", 1)
    assert "watchdog" not in result.usage.by_agent
    (escalation,) = driver.records(TOPICS.escalations, Escalation)
    assert escalation.evidence["rule"] == "stuck" and escalation.evidence["source"] == "watchdog"


def test_a_refusal_is_not_counted_as_a_hop() -> None:
    driver = Driver()
    queue = driver.feed(TOPICS.tasks, Task(input="go", trace_id="t"))
    queue = driver.feed(TOPICS.outbox, decode(queue[0][1], Envelope))
    event = next(decode(v, Envelope) for t, v in queue if t == TOPICS.event("work"))
    driver.feed(
        TOPICS.outbox, step_event(SPEC.agent("a"), event, STEP_REFUSED, payload={"reason": "over"})
    )
    (result,) = driver.records(TOPICS.results, TerminalResult)
    assert result.status == "halted" and result.usage.hops == 0


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 10_000),
    cost=st.floats(1e-6, 1.0),
    plan=st.lists(st.tuples(st.integers(1, 4), st.floats(0, 1), st.booleans()), max_size=30),
)
def test_reservations_never_let_the_totals_pass_the_budget(
    limit: int, cost: float, plan: list[tuple[int, float, bool]]
) -> None:
    """Forward events to 1-4 agents; a step spends any part of its allowance; in any order,
    what is spent plus what is still reserved stays within the budget."""
    snap = Snapshot(trace_id="t", version=1, budget=Budget(max_tokens=limit, max_cost=cost))
    pending: list[tuple[str, str, Allowance]] = []
    for n, (agents, fraction, fold_first) in enumerate(plan):
        if fold_first and pending:
            event_id, agent, share = pending.pop(0)
            assert share.tokens is not None and share.cost is not None
            step = Envelope(
                event_id=f"s{n}",
                trace_id="t",
                causation_id=event_id,
                type="x",
                source=agent,
                usage=Usage(tokens_in=int(share.tokens * fraction), cost=share.cost * fraction),
            )
            snap = budget.release(snap, step)
            snap.totals = Totals(
                tokens_in=snap.totals.tokens_in + step.usage.tokens_in,
                cost=snap.totals.cost + step.usage.cost,
            )
        allotted = budget.allot(snap, f"e{n}", [f"g{i}" for i in range(agents)])
        if isinstance(allotted, budget.Exhausted):
            continue
        snap, share = allotted
        pending += [(f"e{n}", f"g{i}", share) for i in range(agents)]
        held = sum(a.tokens or 0 for a in snap.reserved.values())
        assert snap.totals.tokens_in + held <= limit
        # dollars are accounted to 1e-12 (choreo/budget/reserve.py); beyond that, float sums
        # of the figures themselves differ in the last bit
        assert snap.totals.cost + sum(a.cost or 0 for a in snap.reserved.values()) <= cost + 1e-12


PRICED = ModelTier(
    model="m", base_url="http://127.0.0.1:9/v1", price_in_per_mtok=1.0, price_out_per_mtok=4.0
)
PROMPT = [{"role": "user", "content": "x" * 400}]  # 100 + 3 tokens by the estimate


def test_max_tokens_is_capped_by_what_is_left_and_a_call_that_cannot_fit_is_not_made() -> None:
    spending = allowance.Spending(Allowance(tokens=1000))
    assert spending.cap(PROMPT, PRICED, 4000) == 897
    assert spending.cap(PROMPT, PRICED, 100) == 100
    spending.spend(Usage(tokens_in=103, tokens_out=794))
    with pytest.raises(allowance.OverBudget) as refused:
        spending.cap(PROMPT, PRICED, None)
    assert refused.value.rule == "budget.tokens"
    assert refused.value.details == {"left": 103, "prompt": 103}


def test_a_call_whose_prompt_alone_costs_more_than_is_left_is_not_made() -> None:
    # the prompt costs 103 tokens at $1/Mtok; output is $4/Mtok
    assert allowance.Spending(Allowance(cost=0.000503)).cap(PROMPT, PRICED, None) == 100
    with pytest.raises(allowance.OverBudget) as refused:
        allowance.Spending(Allowance(cost=0.0001)).cap(PROMPT, PRICED, None)
    assert refused.value.rule == "budget.cost"


def test_a_reply_without_usage_is_counted_by_the_estimate_and_marked(tmp_path: Path) -> None:
    script = tmp_path / "silent.yaml"
    script.write_text(
        yaml.safe_dump(
            {
                "model": "silent",
                "faults": {"no_usage": True},
                "rules": [{"reply": "twelve characters"}],
            }
        )
    )
    before = (
        REGISTRY.get_sample_value("choreo_model_usage_estimated_total", {"model": "silent"}) or 0.0
    )
    with model_server(script) as url:
        client = ModelClient(
            ModelTier(model="silent", base_url=url, price_in_per_mtok=1.0), name="silent"
        )

        async def call() -> Any:
            async with client:
                with allowance.spending(Allowance(tokens=200)) as scope:
                    done = await client.complete(PROMPT, agent="tester", deadline=None)
                    return done, scope

        done, scope = asyncio.run(call())
    assert done.usage.estimated and (done.usage.tokens_in, done.usage.tokens_out) == (103, 5)
    assert done.usage.cost == pytest.approx(103e-6)
    assert scope.spent.tokens_in == 103
    assert (
        REGISTRY.get_sample_value("choreo_model_usage_estimated_total", {"model": "silent"})
        == before + 1
    )


def test_the_scripted_server_honours_max_tokens(tmp_path: Path) -> None:
    script = tmp_path / "long.yaml"
    script.write_text(yaml.safe_dump({"model": "long", "rules": [{"reply": "word " * 500}]}))
    with model_server(script) as url:
        client = ModelClient(ModelTier(model="long", base_url=url), name="long")

        async def call() -> Any:
            async with client:
                with allowance.spending(Allowance(tokens=150)):
                    return await client.complete(PROMPT, agent="tester", deadline=None)

        done = asyncio.run(call())
    assert done.usage.tokens_out == 150 - 103
    assert done.usage.tokens_in + done.usage.tokens_out <= 150
