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


def test_the_mesh_runs_report_counts_each_record_in_the_step_it_belongs_to() -> None:
    from datetime import UTC, datetime, timedelta

    from choreo.bench import long_mesh
    from choreo.schemas import HopRecord

    start = datetime(2026, 1, 1, tzinfo=UTC)
    hops = [
        HopRecord(
            trace_id="t1",
            event_id=f"e{k}",
            agent="writer",
            hop=k,
            type="work.next",
            state_version=k + 1,
            state_hash="h",
            input_fingerprint="f",
            created_at=start + timedelta(milliseconds=10 * k),
        )
        for k in range(1, 21)
    ]
    # a 100-byte record just before each step's hop record, and the task at the start
    records = [(start.timestamp(), 50)] + [
        ((start + timedelta(milliseconds=10 * k - 1)).timestamp(), 100) for k in range(1, 21)
    ]
    run = long_mesh.MeshRun("failed", "the state snapshot would be too large", wall_s=1.0)
    long_mesh.per_step(run, hops, records)
    assert run.written[:3] == [150, 100, 100] and sum(run.written) == 2050
    report = long_mesh.report(run, "choreo bench long --mesh", "embedded", 2048)
    assert "ended `failed` after 20 steps: the state snapshot would be too large" in report
    assert "| 1-10 | 10.0 ms | 10.0 ms | 0.1 KiB | 0.1 KiB |" in report
    assert "| 10-20 | 10.0 ms | 10.0 ms |" in report
