"""``choreo bench long --mesh``: the long workload end to end, on a real broker.

The keeper and the workload's Python agent (``choreo.bench.long.write_line``) run as their
own processes (``choreo.local.launch.start_mesh``, no watchdog) on the broker given; one
trace of ``steps`` steps appends a ``width``-byte line per step. Per step range: the time
between consecutive steps (from the hop records' times, which the keeper takes from the log)
and the bytes every topic of the mesh took in, each record counted in the step whose time
window holds its log timestamp. CPU: each service's, from ``/proc`` (choreo.bench.idle). A
trace that fails (its state past the broker's record limit) is reported as such, with the
steps it made.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from choreo.bench.idle import cpu_seconds
from choreo.bench.long import RANGES, long_mesh
from choreo.bench.stats import Summary
from choreo.client import SyncClient
from choreo.kafka.clients import read_topic
from choreo.local.launch import start_mesh
from choreo.observe.settings import Settings
from choreo.schemas import HopRecord, Task
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh


@dataclass
class MeshRun:
    """One run: the trace's end, its wall time, the time of each step (seconds since the
    first record), the bytes written per step, and each service's CPU seconds."""

    status: str
    reason: str | None
    wall_s: float
    times: list[float] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    #: CPU seconds each service used during the run, by service name.
    cpu_s: dict[str, float] = field(default_factory=dict)


def _run(bootstrap: str, steps: int, width: int, workdir: Path) -> MeshRun:
    mesh_path = workdir / "mesh.yaml"
    mesh_path.write_text(yaml.safe_dump({**long_mesh(), "max_snapshot_bytes": 1 << 30}))
    spec = load_mesh(mesh_path)
    settings = Settings(topic_prefix=f"bench-long-{os.getpid()}")
    topics = Topics(settings.topic_prefix)
    env = {"CHOREO_TOPIC_PREFIX": settings.topic_prefix}
    client = SyncClient(bootstrap, settings=settings)
    try:
        with start_mesh(
            spec, mesh_path, bootstrap, settings, workdir / "logs", watchdog=False, env=env
        ) as group:
            pids = {c.name: c.pid for c in group.children if c.pid is not None}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            wall = time.perf_counter()
            trace_id = client.submit(
                Task(input="long", initial_state={"goal": steps, "width": width})
            )
            result = client.wait(trace_id, 3600)
            run = MeshRun(result.status, result.reason, wall_s=time.perf_counter() - wall)
            run.cpu_s = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        hops = sorted(client.hops(trace_id), key=lambda h: h.hop)
        topic_names = (
            topics.tasks,
            topics.outbox,
            topics.state,
            topics.blobs,
            topics.hops,
            topics.results,
        )
        records = [
            (r.timestamp / 1000, len(r.value or b""))
            for topic in (*topic_names, topics.event("work.next"))
            for r in asyncio.run(read_topic(bootstrap, settings, topic))
        ]
    finally:
        client.close()
    per_step(run, hops, records)
    return run


def per_step(run: MeshRun, hops: list[HopRecord], records: list[tuple[float, int]]) -> None:
    """Fill the step times and the bytes of each step's window (up to its hop record)."""
    ends = [h.created_at.timestamp() for h in hops]
    start = min((t for t, _ in records), default=ends[0] if ends else 0.0)
    run.times = [end - start for end in ends]
    run.written = [0] * (len(ends) + 1)
    for at, size in records:
        run.written[min(bisect_right(ends, at), len(ends))] += size


def run(bootstrap: str, steps: int, width: int) -> MeshRun:
    """Run the workload once on the broker at ``bootstrap``."""
    with tempfile.TemporaryDirectory(prefix="choreo-bench-long-") as workdir:
        return _run(bootstrap, steps, width, Path(workdir))


def report(result: MeshRun, command: str, broker_kind: str, width: int) -> str:
    """Time between steps and bytes per step by step range, as a Markdown section."""
    steps = len(result.times)
    rows = []
    for first, last in RANGES:
        last = min(last, steps)
        if first >= last:
            break
        # step k's time is that of its hop record; its bytes are those of the window before it
        between = [
            result.times[k - 1] - result.times[k - 2] for k in range(max(first, 2), last + 1)
        ]
        written = [float(b) for b in result.written[first - 1 : last]]
        rows.append(
            f"| {first}-{last} | {Summary.of(between).p50 * 1000:.1f} ms "
            f"| {sum(between) / len(between) * 1000:.1f} ms "
            f"| {Summary.of(written).p50 / 1024:,.1f} KiB "
            f"| {sum(written) / len(written) / 1024:,.1f} KiB |"
        )
    ending = f"the trace ended `{result.status}` after {steps} steps" + (
        f": {result.reason}" if result.reason else ""
    )
    table = "\n".join(rows)
    cpu = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in sorted(result.cpu_s.items()))
    return f"""
Command: `{command}` (broker: {broker_kind})

One trace of a Python agent appending a {width}-byte line per step; {ending}, in
{result.wall_s:.1f} s. CPU seconds per service over the run: {cpu}. Time between
consecutive steps and bytes the broker took in per step (every topic of the mesh; a full
snapshot of the state now and then, so the mean is what the steps pay), median (p50) and mean
over the range:

| steps | time between steps, p50 | mean | bytes written per step, p50 | mean |
| --- | ---: | ---: | ---: | ---: |
{table}
"""
