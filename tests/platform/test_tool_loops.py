"""A model agent that calls one tool with the same arguments on every step of a trace is a
loop, and the watchdog halts it, on the real broker.

Each step makes one call, well within its own ``max_tool_calls``, and every round moves the
state on (a Python planner hands out a new ticket, the checker answers about it in new
words): no limit and no other loop rule can see this loop, only the watchdog's repeated-call
rule (``loop.tool_repeat``, on the hop records' ``tool_calls``). The case varies: a Python
tool and a tool of an MCP server over stdio, whose arguments the model writes in one order on
some steps and in the other order on the rest, which is still the same call. The same tool
called with new arguments on every step is not a loop and runs to its end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from choreo.bench.watchdog import caught_up, observe
from tests.conftest import RunningMesh, wait_until
from tests.platform.conftest import HERE
from tests.platform.handlers import TICKETS
from tests.tiers.support import server_stats

pytestmark = pytest.mark.integration

CHECKER = "stock checker"
#: The looping cases: the tool the checker calls on every step, and its arguments.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "stock": ("stock", {"sku": "A-1", "warehouse": "north"}),
    "calc": ("multiply", {"a": 6, "b": 7}),
}
#: Tickets on whose steps the model writes the arguments the other way round.
FLIPPED = "|".join(TICKETS[1::2])
#: A verdict reaches the keeper while the agents keep working; a linear chain has one step
#: in flight at a time, whose record the keeper drops once the trace is halted.
STEPS_IN_FLIGHT = 1


def loop_script() -> dict[str, Any]:
    """The checker's model: once a tool answered, a new sentence about the ticket; before,
    the case's call (``case: fresh`` asks about the ticket itself)."""
    rules: list[dict[str, Any]] = [
        {
            "when": {"system": CHECKER, "user": rf"## ticket\n{t}\b", "tool": "."},
            "reply": f"{t.title()}: checked, the {t} can ship.",
        }
        for t in TICKETS
    ]
    for case, (name, arguments) in CASES.items():
        rules.append(
            {
                "when": {
                    "system": CHECKER,
                    "user": rf"(?s)case: {case}\b.*## ticket\n(?:{FLIPPED})\b",
                },
                "tool_calls": [{"name": name, "arguments": dict(reversed(arguments.items()))}],
            }
        )
        rules.append(
            {
                "when": {"system": CHECKER, "user": rf"case: {case}\b"},
                "tool_calls": [{"name": name, "arguments": arguments}],
            }
        )
    rules += [
        {
            "when": {"system": CHECKER, "user": rf"(?s)case: fresh\b.*## ticket\n{t}\b"},
            "tool_calls": [{"name": "stock", "arguments": {"sku": t, "warehouse": "north"}}],
        }
        for t in TICKETS
    ]
    # calls as slow as the watchdog benchmark's, so the loop is halted long before the
    # tickets run out even on a loaded machine
    return {"model": "loops", "latency_ms": 200, "rules": rules}


def loop_mesh(script: Path) -> dict[str, Any]:
    return {
        "name": "tool-loops",
        "entry": ["job"],
        "python_path": [str(HERE)],
        "state": {name: {"reducer": "replace"} for name in ("round", "ticket", "note")},
        "models": {"scripted": {"model": "loops", "script": str(script)}},
        "budgets": {"max_hops": 60, "max_seconds": 600},
        "agents": [
            {
                "name": "planner",
                "kind": "python",
                "handler": "handlers:planner",
                "subscribe": ["job", "checked"],
                "emit": ["check.asked"],
            },
            {
                "name": "checker",
                "subscribe": ["check.asked"],
                "model": "scripted",
                "persona": f"You are the {CHECKER}.",
                "reads": ["input", "ticket"],
                "tools": [
                    {"function": "platform_tools:stock"},
                    {"mcp": "calc", "command": ["python", str(HERE / "calc_mcp.py")]},
                ],
                "max_tool_calls": 4,
                "writes": {"note": "{output}"},
                "routes": [{"emit": "checked"}],
            },
        ],
    }


@pytest.fixture(scope="module")
def looping(
    start_mesh: Callable[..., RunningMesh], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningMesh]:
    """The mesh with its watchdog, once the watchdog reads: a loop started before it joined
    its group would run into the hop budget instead."""
    base = tmp_path_factory.mktemp("tool-loops")
    script = base / "model.yaml"
    script.write_text(yaml.safe_dump(loop_script(), sort_keys=False))
    with start_mesh(loop_mesh(script), base_dir=base, watchdog=True) as mesh:
        healthy = mesh.submit("hello")
        assert mesh.result(healthy).status == "completed"
        wait_until(
            partial(read_by_watchdog, mesh, healthy),
            240,
            interval=1.0,
            message="the watchdog to join and read",
        )
        yield mesh


def read_by_watchdog(mesh: RunningMesh, trace_id: str) -> bool:
    return mesh.client.run(caught_up, trace_id)


def test_the_same_tool_call_on_every_step_is_halted_by_the_watchdog(looping: RunningMesh) -> None:
    url = looping.model_url("scripted")
    before = server_stats(url)["completions"]
    traces = {case: looping.submit(f"case: {case}") for case in CASES}
    for trace_id in traces.values():
        result = looping.result(trace_id, timeout=240)
        assert (result.status, result.reason) == ("halted", "loop.tool_repeat"), result.reason
    # Every call the model server answered is in a step record, the one in flight included.
    wait_until(
        lambda: (
            server_stats(url)["completions"] - before
            == sum(r.usage.calls for t in traces.values() for r in looping.steps(t, "checker"))
        ),
        60,
        message="the last step in flight to write its record",
    )
    for case, trace_id in traces.items():
        wait_until(
            partial(read_by_watchdog, looping, trace_id),
            120,
            interval=1.0,
            message=f"the watchdog to read trace {trace_id}",
        )
        seen = looping.client.run(observe, trace_id)
        assert [(v.action, v.agent, v.reason) for v in seen.verdicts] == [
            ("persona_shift", "checker", "loop.tool_repeat"),
            ("halt", "checker", "loop.tool_repeat"),
        ], case
        shift, halt = seen.verdicts
        name, _ = CASES[case]
        (matched,) = shift.evidence["matched"]  # no other rule saw a loop
        assert (matched["details"]["tool"], matched["details"]["calls"]) == (name, 3)
        checker = [h for h in seen.hops if h.agent == "checker"]
        assert all(len(h.tool_calls) == 1 and h.tool_calls[0].status == "ok" for h in checker)
        assert {(h.tool_calls[0].name, h.tool_calls[0].args_sha256) for h in checker} == {
            (name, matched["details"]["args_sha256"])
        }  # both argument orders: one call
        (result,) = seen.results
        (escalation,) = seen.escalations
        assert (escalation.reason, escalation.evidence["verdict_id"]) == (
            "loop.tool_repeat",
            halt.verdict_id,
        )
        # Nothing folded after the halt; of the model's work only the step running when the
        # halt landed is not in the trace's usage.
        assert all(h.created_at <= result.finished_at for h in seen.hops)
        assert result.usage.hops == len(seen.hops)
        folded = {h.event_id for h in checker}
        assert (
            len([r for r in looping.steps(trace_id, "checker") if r.event_id not in folded])
            <= STEPS_IN_FLIGHT
        )
        assert len(checker) < len(TICKETS)  # halted, not run out of tickets


def test_the_same_tool_with_new_arguments_on_every_step_is_not_a_loop(looping: RunningMesh) -> None:
    trace_id = looping.submit("case: fresh")
    result = looping.result(trace_id, timeout=240)
    assert result.status == "completed", result.reason
    assert result.output == f"checked {len(TICKETS)} tickets"
    wait_until(
        partial(read_by_watchdog, looping, trace_id),
        120,
        interval=1.0,
        message="the watchdog to read the trace",
    )
    seen = looping.client.run(observe, trace_id)
    assert seen.verdicts == [] and seen.escalations == []
    calls = [c for h in seen.hops for c in h.tool_calls]
    assert len({c.args_sha256 for c in calls}) == len(calls) == len(TICKETS)
