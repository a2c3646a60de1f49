"""Rate limits and outages through a whole mesh: real broker, keeper and agents as processes,
scripted model servers over real HTTP that count what they answered, and what each agent
process's metrics endpoint and ``choreo trace`` say of them."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from choreo.schemas import TerminalResult
from tests.commands import CHOREO
from tests.conftest import ProcessMesh
from tests.tiers.conftest import scripted
from tests.tiers.support import cost_of, scrape, server_stats

pytestmark = pytest.mark.integration

__all__ = ["scripted"]  # the tiers tests' fixture: scripted model servers as processes

PRICES = {"local-model": (0.5, 1.5), "premium-model": (3.0, 15.0)}
BATCH = 6


def tier(url: str, model: str, **fields: Any) -> dict[str, Any]:
    return {
        "base_url": url,
        "model": model,
        "price_in_per_mtok": PRICES[model][0],
        "price_out_per_mtok": PRICES[model][1],
        **fields,
    }


def metrics_env(folder: Path) -> dict[str, str]:
    """Every service serves /metrics on a free port and announces it in ``folder``."""
    return {"CHOREO_METRICS_PORT": "0", "CHOREO_METRICS_TARGETS_DIR": str(folder)}


def results(mesh: ProcessMesh, trace_ids: list[str]) -> list[TerminalResult]:
    return [mesh.result(trace_id, timeout=120) for trace_id in trace_ids]


@pytest.fixture(scope="module")
def storm(
    scripted: Callable[..., str],
    start_mesh_processes: Callable[..., ProcessMesh],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ProcessMesh, str, Path]]:
    """A triage → solver mesh on ``auto`` tiers whose server answers 429 to every 2nd call."""
    url = scripted(
        faults={"rate_limit": {"every": 2, "retry_after": 0.05}},
        rules=[
            {"when": {"model": "^local-model$"}, "reply": "label: billing"},
            {"when": {"model": "^premium-model$"}, "reply": "solved: refund issued"},
        ],
    )
    folder = tmp_path_factory.mktemp("storm")
    spec = {
        "name": "storm",
        "entry": ["ticket.received"],
        "models": {
            "local": tier(url, "local-model", max_retries=10),
            "premium": tier(url, "premium-model", max_retries=10),
        },
        "routing": {"cheap": "local", "premium": "premium"},
        "agents": [
            {
                "name": "triage",
                "subscribe": ["ticket.received"],
                "persona": "You triage.",
                "model": "auto",
                "task_kind": "classification",
                "writes": {"label": "{output}"},
                "routes": [{"emit": "ticket.triaged"}],
            },
            {
                "name": "solver",
                "subscribe": ["ticket.triaged"],
                "persona": "You solve.",
                "model": "auto",
                "task_kind": "reasoning",
                "writes": {"answer": "{output}"},
                "routes": [{"finish": True, "output": "answer"}],
            },
        ],
    }
    targets = folder / "targets"
    with start_mesh_processes(spec, base_dir=folder, env=metrics_env(targets)) as mesh:
        yield mesh, url, targets


def test_a_429_storm_is_absorbed_and_every_task_completes(
    storm: tuple[ProcessMesh, str, Path],
) -> None:
    mesh, url, targets = storm
    trace_ids = [mesh.submit(f"ticket {i}") for i in range(BATCH)]
    done = results(mesh, trace_ids)

    assert [r.status for r in done] == ["completed"] * BATCH
    assert {r.output for r in done} == {"solved: refund issued"}
    stats = server_stats(url)
    # Half the calls were refused, and the routing sent each kind of step to its tier.
    assert stats["rate_limited"] >= BATCH
    assert stats["requests"] == stats["completions"] + stats["rate_limited"]
    assert {m: s["completions"] for m, s in stats["models"].items()} == {
        "local-model": BATCH,
        "premium-model": BATCH,
    }
    # Every refusal was retried, as the agents' own metrics say.
    retried = scrape(targets, "agent:", "choreo_model_retries_total", status="rate_limited")
    assert retried == stats["rate_limited"]
    # Nothing lost, nothing doubled: one terminal record per task.
    for trace_id in trace_ids:
        assert len(mesh.results(trace_id)) == 1

    # The mesh's accounting equals the server's, in tokens and in cost.
    tokens_in = sum(r.usage.tokens_in for r in done)
    tokens_out = sum(r.usage.tokens_out for r in done)
    assert tokens_in == sum(m["prompt_tokens"] for m in stats["models"].values())
    assert tokens_out == sum(m["completion_tokens"] for m in stats["models"].values())
    assert sum(r.usage.cost for r in done) == pytest.approx(cost_of(stats, PRICES))


def test_hop_records_and_choreo_trace_show_each_agents_tokens_and_cost(
    storm: tuple[ProcessMesh, str, Path],
) -> None:
    mesh, _url, _targets = storm
    trace_id = mesh.submit("one more ticket")
    result = mesh.result(trace_id)
    hops = mesh.hops(trace_id)
    by_agent = {h.agent: h.usage for h in hops}
    assert sorted(by_agent) == ["solver", "triage"]
    assert sum(u.tokens_in for u in by_agent.values()) == result.usage.tokens_in
    assert sum(u.cost for u in by_agent.values()) == pytest.approx(result.usage.cost)
    # Per agent, each step is charged at its tier's prices.
    for agent, model in (("triage", "local-model"), ("solver", "premium-model")):
        usage = by_agent[agent]
        assert usage.cost == pytest.approx(
            (usage.tokens_in * PRICES[model][0] + usage.tokens_out * PRICES[model][1]) / 1e6
        )

    out = subprocess.run(
        [*CHOREO, "trace", trace_id],
        env={**mesh.env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for agent, step in by_agent.items():
        line = next(line for line in out.splitlines() if f"{agent}  hop" in line)
        assert f"{step.tokens_in}→{step.tokens_out} tok  ${step.cost:.6f}" in line


def test_a_tier_set_to_fail_on_outage_fails_the_tasks_with_the_reason_and_opens_its_circuit(
    scripted: Callable[..., str],
    start_test_mesh_processes: Callable[..., ProcessMesh],
    tmp_path: Path,
) -> None:
    url = scripted(faults={"down": True})
    spec = {
        "name": "outage",
        "entry": ["ticket.received"],
        "models": {
            "premium": tier(
                url,
                "premium-model",
                max_retries=2,
                circuit_failures=3,
                circuit_cooldown_s=300,
                on_outage="fail",
            )
        },
        "agents": [
            {
                "name": "solver",
                "subscribe": ["ticket.received"],
                "persona": "You solve.",
                "model": "premium",
                "routes": [{"finish": True, "output": "input"}],
            }
        ],
    }
    targets = tmp_path / "targets"
    mesh = start_test_mesh_processes(spec, base_dir=tmp_path, env=metrics_env(targets))
    trace_ids = [mesh.submit(f"ticket {i}") for i in range(3)]
    done = results(mesh, trace_ids)

    assert [r.status for r in done] == ["failed"] * 3
    reasons = [r.reason or "" for r in done]
    for reason in reasons:
        assert re.search(r"^solver: model call failed \((http_503|circuit_open)\)", reason), reason
    # Once three requests had failed the circuit opened: the rest failed fast, unsent.
    assert any("circuit_open" in reason for reason in reasons)
    assert server_stats(url)["unavailable"] < 3 * 3
    assert scrape(targets, "agent:solver", "choreo_model_circuit_state", tier="premium") == 2
