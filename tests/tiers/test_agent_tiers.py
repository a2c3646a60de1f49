"""``auto`` tier routing and the context-budget summarizer: one agent step over real HTTP to a
scripted model server, which reports what each tier was asked."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest

from choreo.agent.behaviour import ModelAgent
from choreo.schemas import Envelope
from choreo.schemas.records import STEP_FAILED
from choreo.spec.mesh import MeshSpec, RoutingSpec, SpecError, parse_mesh
from tests.tiers.support import cost_of, server_stats
from tests.unit.support import event

PRICES = {"local-model": (0.5, 1.5), "premium-model": (3.0, 15.0)}
NOTES = [
    f"note-{i:02d}: the build on host {i} failed at the linking stage again" for i in range(1, 9)
]
RULES = [
    {"when": {"system": "running summary"}, "reply": "SUMMARY: notes 1-6, linking failures"},
    # Only a prompt with the summary, the recent notes and none of the folded ones:
    {
        "when": {"model": "^premium-model$", "user": r"(?s)\A(?!.*note-0[1-6]).*SUMMARY.*note-08"},
        "reply": "premium saw the summary and the recent notes",
    },
    {"when": {"model": "^premium-model$"}, "reply": "premium answer"},
    {"when": {"model": "^local-model$"}, "reply": "local answer"},
]


def mesh(url: str, *agents: dict[str, Any], local: dict[str, Any] | None = None) -> MeshSpec:
    """Two tiers on one scripted server; ``local`` overrides fields of the cheap one."""
    models = {
        tier: {
            "base_url": url,
            "model": f"{tier}-model",
            "price_in_per_mtok": p[0],
            "price_out_per_mtok": p[1],
        }
        for tier, p in (("local", PRICES["local-model"]), ("premium", PRICES["premium-model"]))
    }
    models["local"].update(local or {})
    return parse_mesh(
        {
            "name": "tiers",
            "entry": ["work.requested"],
            "models": models,
            "state": {"notes": {"reducer": "append"}, "answer": {}},
            "routing": {"cheap": "local", "premium": "premium", "cheap_max_input_tokens": 50},
            "agents": [
                {
                    "subscribe": ["work.requested"],
                    "persona": f"You are {a['name']}.",
                    "routes": [{"finish": True, "output": "answer"}],
                    "writes": {"answer": "{output}"},
                    **a,
                }
                for a in agents
            ],
        }
    )


def run_step(spec: MeshSpec, name: str, ev: Envelope) -> Envelope:
    async def once() -> Envelope:
        agent = ModelAgent(spec, spec.agent(name))
        try:
            [out] = await agent.step(ev)
        finally:
            await agent.aclose()
        return out

    return asyncio.run(once())


@pytest.fixture(scope="module")
def url(scripted: Callable[..., str]) -> str:
    return scripted(rules=RULES)


def completions(url: str) -> dict[str, int]:
    return {name: m["completions"] for name, m in server_stats(url)["models"].items()}


# -- the rule -----------------------------------------------------------------------------------


def test_the_declared_kind_decides_and_size_only_when_none_is_declared() -> None:
    routing = RoutingSpec(cheap="small", premium="big", cheap_max_input_tokens=100)
    for kind in ("classification", "validation", "formatting", "summarization"):
        assert routing.tier_for(kind, input_tokens=10_000) == "small"
    assert routing.tier_for("reasoning", input_tokens=1) == "big"
    assert routing.tier_for(None, input_tokens=100) == "small"
    assert routing.tier_for(None, input_tokens=101) == "big"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("routing"), "'auto' needs a routing section"),
        (
            lambda m: m["routing"].update(premium="gold"),
            "routing.premium: unknown model tier 'gold'",
        ),
        (
            lambda m: m["agents"][0].update(
                context={"max_input_tokens": 10, "history": ["log"], "tier": "tiny"}
            ),
            "context.tier: unknown model tier 'tiny'",
        ),
    ],
)
def test_a_bad_tier_choice_fails_at_load_time(
    change: Callable[[dict[str, Any]], Any], message: str
) -> None:
    data = {
        "name": "bad",
        "entry": ["go"],
        "models": {
            "local": {"model": "l", "base_url": "http://127.0.0.1:9/v1"},
            "premium": {"model": "p", "base_url": "http://127.0.0.1:9/v1"},
        },
        "routing": {"cheap": "local", "premium": "premium"},
        "agents": [
            {
                "name": "a",
                "subscribe": ["go"],
                "persona": "p",
                "model": "auto",
                "routes": [{"finish": True}],
            }
        ],
    }
    change(data)
    with pytest.raises(SpecError, match=message):
        parse_mesh(copy.deepcopy(data))


# -- auto routing over HTTP ---------------------------------------------------------------------


def test_auto_sends_classification_to_the_cheap_tier_and_reasoning_to_premium(url: str) -> None:
    spec = mesh(
        url,
        {"name": "sorter", "model": "auto", "task_kind": "classification"},
        {"name": "thinker", "model": "auto", "task_kind": "reasoning"},
    )
    before = completions(url)
    sorted_out = run_step(spec, "sorter", event(state={"input": "a ticket"}))
    thought = run_step(spec, "thinker", event(state={"input": "a ticket"}))
    after = completions(url)

    assert sorted_out.payload["text"] == "local answer"
    assert thought.payload["text"] == "premium answer"
    assert after.get("local-model", 0) - before.get("local-model", 0) == 1
    assert after.get("premium-model", 0) - before.get("premium-model", 0) == 1
    # Each step is charged at its own tier's prices.
    assert sorted_out.usage.cost == pytest.approx(
        (sorted_out.usage.tokens_in * 0.5 + sorted_out.usage.tokens_out * 1.5) / 1e6
    )
    assert thought.usage.cost == pytest.approx(
        (thought.usage.tokens_in * 3.0 + thought.usage.tokens_out * 15.0) / 1e6
    )


def test_auto_without_a_kind_routes_by_the_estimated_input_size(url: str) -> None:
    spec = mesh(url, {"name": "unsure", "model": "auto"})
    assert run_step(spec, "unsure", event(state={"input": "short"})).payload["text"] == (
        "local answer"
    )
    long_input = " ".join(NOTES)  # well over 50 estimated tokens
    assert run_step(spec, "unsure", event(state={"input": long_input})).payload["text"] == (
        "premium answer"
    )


# -- the context budget -------------------------------------------------------------------------

ANALYST = {
    "name": "analyst",
    "model": "premium",
    "reads": ["input", "notes"],
    "context": {"max_input_tokens": 120, "history": ["notes"], "keep_recent": 2},
}


def test_over_budget_the_cheap_tier_folds_older_notes_into_the_summary(url: str) -> None:
    spec = mesh(url, ANALYST)
    before = server_stats(url)
    out = run_step(spec, "analyst", event(state={"input": "why?", "notes": NOTES}))
    after = server_stats(url)

    assert out.payload["text"] == "premium saw the summary and the recent notes"
    assert out.delta == {
        "summary": "SUMMARY: notes 1-6, linking failures",
        "summary.folded": {"notes": 6},
        "answer": "premium saw the summary and the recent notes",
    }
    assert out.payload["context"]["summarized"] is True
    assert out.payload["context"]["estimated_tokens"] <= 120
    # Two calls, the summarizer's on the cheap tier; the step carries both calls' usage.
    spent = {
        name: {k: m[k] - before["models"].get(name, {}).get(k, 0) for k in m}
        for name, m in after["models"].items()
    }
    assert spent["local-model"]["completions"] == 1
    assert spent["premium-model"]["completions"] == 1
    assert out.usage.calls == 2
    assert out.usage.tokens_in == sum(m["prompt_tokens"] for m in spent.values())
    assert out.usage.tokens_out == sum(m["completion_tokens"] for m in spent.values())
    assert out.usage.cost == pytest.approx(cost_of({"models": spent}, PRICES))


def test_the_fold_is_deterministic_and_a_later_step_within_budget_reuses_it(url: str) -> None:
    spec = mesh(url, ANALYST)
    first = run_step(spec, "analyst", event(state={"input": "why?", "notes": NOTES}))
    again = run_step(spec, "analyst", event(state={"input": "why?", "notes": NOTES}))
    assert again.delta == first.delta
    assert again.payload["input_fingerprint"] == first.payload["input_fingerprint"]

    # The keeper folded the step; one more note arrived. Summary plus three notes fit.
    assert first.delta is not None
    state = {
        "input": "why?",
        "notes": [*NOTES, "note-09: linking fixed"],
        "summary": first.delta["summary"],
        "summary.folded": first.delta["summary.folded"],
    }
    before = completions(url)
    later = run_step(spec, "analyst", event(state=state, event_id="ev-2"))
    assert completions(url).get("local-model") == before.get("local-model")  # no new fold
    assert later.usage.calls == 1
    assert later.delta == {"answer": later.payload["text"]}
    assert "context" not in later.payload


def test_a_failed_summarizer_fails_the_step_with_its_reason(
    url: str, scripted: Callable[..., str]
) -> None:
    down = scripted(faults={"down": True})
    spec = mesh(url, ANALYST, local={"base_url": down, "max_retries": 0})
    out = run_step(spec, "analyst", event(state={"input": "why?", "notes": NOTES}))
    assert out.type == STEP_FAILED
    assert "analyst: summarizer call failed (http_503)" in out.payload["reason"]
    assert out.delta is None
