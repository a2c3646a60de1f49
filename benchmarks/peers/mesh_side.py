"""The workloads on Choreo Mesh: each mesh runs as real processes on a real broker, and a task
is timed on the client, from its produce to the arrival of its terminal record."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from workloads import MESHES

from choreo.client import Client
from choreo.local.launch import start_mesh
from choreo.observe.settings import Settings
from choreo.spec.mesh import load_mesh


class MeshClient:
    """Times tasks on one running mesh through choreo.client.Client: from submitting each to
    the arrival of its terminal record (one follower of the results topic serves them all)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.client = Client(bootstrap, prefix=prefix, client_id="peer-bench")

    async def start(self) -> None:
        await self.client.__aenter__()

    async def run(self, text: str, timeout_s: float = 60.0) -> float:
        """Seconds from submitting one task to its terminal record; it must complete."""
        started = time.perf_counter()
        trace_id = await self.client.submit(text)
        result = await self.client.wait(trace_id, timeout_s)
        elapsed = time.perf_counter() - started
        if result.status != "completed":
            raise RuntimeError(f"mesh task {trace_id} ended {result.status}: {result.reason}")
        return elapsed

    async def stop(self) -> None:
        await self.client.close()


@contextmanager
def running_meshes(
    bootstrap: str, base_url: str, workdir: Path, tag: str, workloads: list[str]
) -> Iterator[dict[str, str]]:
    """Start one mesh per distinct spec of ``workloads``; yield workload name → topic prefix."""
    prefixes: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        started: dict[str, str] = {}
        for workload in workloads:
            build = MESHES[workload]
            if build.__name__ in started:
                prefixes[workload] = started[build.__name__]
                continue
            prefix = f"peers-{tag}-{workload}-{int(time.time())}"
            path = workdir / f"{prefix}.yaml"
            path.write_text(yaml.safe_dump(build(base_url)))
            group = start_mesh(
                load_mesh(path),
                path,
                bootstrap,
                Settings(topic_prefix=prefix),
                workdir / "logs" / prefix,
                watchdog=False,
                env={"CHOREO_TOPIC_PREFIX": prefix},
            )
            stack.enter_context(group)
            started[build.__name__] = prefixes[workload] = prefix
        yield prefixes
