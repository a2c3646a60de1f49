"""``choreo bench long``'s workload and report, on a short trace (no broker: the keeper alone)."""

from __future__ import annotations

import asyncio

from choreo.bench import long
from choreo.schemas import Envelope


def test_the_workloads_agent_reads_the_counter_and_appends_a_line() -> None:
    event = Envelope(
        event_id="e1",
        trace_id="t1",
        type="work.next",
        source="writer",
        state={"input": "go", "n": 4, "goal": 1000, "width": 2048},
        state_version=5,
    )
    step = long.Step(
        event, agent=long.AGENT, clients={}, default_tier=None, reads=["n", "goal", "width"]
    )
    result = asyncio.run(long.write_line(step))
    assert (result.action, result.event_type, result.writes["n"]) == ("emit", "work.next", 1)
    assert len(result.writes["log"]) == long.LINE_BYTES and result.writes["log"].startswith(
        "step 5: "
    )
    last = Envelope(
        event_id="e2",
        trace_id="t1",
        type="work.next",
        source="writer",
        state={"input": "go", "n": 9, "goal": 10, "width": 16},
    )
    step = long.Step(
        last, agent=long.AGENT, clients={}, default_tier=None, reads=["n", "goal", "width"]
    )
    result = asyncio.run(long.write_line(step))
    assert (result.action, result.output, len(result.writes["log"])) == ("finish", 10, 16)


def test_a_short_long_trace_completes_and_its_report_gives_each_step_range() -> None:
    result = long.run(120)
    assert result.status == "completed" and len(result.cpu) == 121
    report = long.report(result, "choreo bench long --steps 120")
    assert "| 10-100 |" in report and "| 100-120 |" in report and "| 200-" not in report
    assert "no record passes the broker's 1 MiB limit" in report
