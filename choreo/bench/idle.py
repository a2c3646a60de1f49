"""``choreo bench idle``: the CPU an idle mesh costs, per service.

Starts the writer-editor mesh (no watchdog) with no task, lets it settle, then reads each
service's CPU time (user + system, ``/proc/<pid>/stat``) at the start and end of a window.
An idle service should cost next to nothing: on Apache Kafka its fetches long-poll, on the
embedded broker its fetch wait backs off (choreo.kafka.clients.FetchBackoff).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from choreo.local.examples import example_mesh
from choreo.local.launch import start_mesh
from choreo.observe.settings import Settings
from choreo.spec.mesh import load_mesh

MESH = example_mesh("writer-editor")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process has used (fields 14 and 15 of its stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def run(bootstrap: str, log_dir: Path, settle_s: float, window_s: float) -> dict[str, float]:
    """Percent of one core each service used over ``window_s`` seconds of idleness."""
    spec = load_mesh(MESH)
    settings = Settings(topic_prefix=f"bench-idle-{os.getpid()}")
    env = {"CHOREO_TOPIC_PREFIX": settings.topic_prefix}
    with start_mesh(spec, MESH, bootstrap, settings, log_dir, watchdog=False, env=env) as group:
        time.sleep(settle_s)  # group joins and the first fetches happen here, not in the window
        pids = {c.name: c.pid for c in group.children if c.pid is not None}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        time.sleep(window_s)
        return {
            name: 100 * (cpu_seconds(pid) - before[name]) / window_s for name, pid in pids.items()
        }


def report(usage: dict[str, dict[str, float]], command: str, window_s: float) -> str:
    """A table of percent of a core per service (rows) and broker (columns)."""
    kinds = list(usage)
    names = sorted({name for per_service in usage.values() for name in per_service})
    titles = {"embedded": "embedded broker", "kafka": "Apache Kafka"}
    head = "| service | " + " | ".join(f"{titles[k]}, % of a core" for k in kinds) + " |"
    rule = "| --- |" + " ---: |" * len(kinds)
    rows = [
        f"| {name} | " + " | ".join(f"{usage[k].get(name, 0.0):.2f}" for k in kinds) + " |"
        for name in names
    ]
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"The writer-editor mesh with no task, on each broker in turn: each service's CPU time "
            f"over {window_s:.0f} s after it settled, as percent of one core (`/proc/<pid>/stat`).",
            "The brokers' own CPU is not counted.",
            "",
            head,
            rule,
            *rows,
            "",
        ]
    )
