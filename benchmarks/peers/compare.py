"""Choreo Mesh against LangGraph (in memory and with its SQLite checkpointer), same workloads.

    pip install -r benchmarks/requirements.txt
    python benchmarks/peers/compare.py --latency-ms 0 50 --rounds 3 --tasks 20

One mock model (``choreo model-server`` with a script, ``latency_ms`` added to each call)
serves both systems over HTTP. For each model latency, every workload runs in rounds, and in
each round every system runs its batch in turn (the order rotates per round), so a noisy
neighbour affects all systems alike. Latency is client-side, from submit (``ainvoke``) to the
terminal record (the final state); the in-flight workload reports tasks per second.
The report is a Markdown section on stdout (and in ``--out`` if given).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml
from langgraph_side import langgraph_systems
from mesh_side import MeshClient, running_meshes
from workloads import WORKLOADS, Workload, model_script

from choreo.bench.stats import Summary, publish
from choreo.kafka.broker import broker_session
from choreo.model_server.process import start_model_server_process, stop_model_server_process

#: One task of a workload on one system: seconds from submit to its end.
RunTask = Callable[[str, str], Awaitable[float]]
WARM_UP = 3
#: (workload, system) → (per-task seconds, tasks/s of each round).
Samples = dict[tuple[str, str], tuple[list[float], list[float]]]


async def batch(run: RunTask, workload: Workload, tasks: int) -> tuple[list[float], float]:
    """Run ``tasks`` tasks, ``workload.batch`` at a time; per-task seconds and tasks/s."""
    latencies: list[float] = []
    started = time.perf_counter()
    for index in range(0, tasks, workload.batch):
        size = min(workload.batch, tasks - index)
        latencies += await asyncio.gather(
            *(run(workload.name, f"task {index + i}") for i in range(size))
        )
    return latencies, tasks / (time.perf_counter() - started)


async def measure(
    bootstrap: str,
    prefixes: dict[str, str],
    base_url: str,
    workdir: Path,
    latency_ms: float,
    rounds: int,
    tasks: int,
    workloads: list[Workload],
) -> Samples:
    """(workload, system) → (per-task seconds, tasks/s per round)."""
    samples: Samples = defaultdict(lambda: ([], []))
    clients = {prefix: MeshClient(bootstrap, prefix) for prefix in set(prefixes.values())}
    for client in clients.values():
        await client.start()
    try:

        async def mesh(workload: str, text: str) -> float:
            # the first tasks wait for the agents' consumer groups to form
            return await clients[prefixes[workload]].run(text, timeout_s=120)

        async with langgraph_systems(base_url, workdir) as graphs:
            systems: list[tuple[str, RunTask]] = [("choreo mesh", mesh)]
            systems += [(graph.name, graph.run) for graph in graphs]
            for workload in workloads:
                for _, run in systems:
                    await batch(run, workload, WARM_UP * workload.batch)
            for round_ in range(rounds):
                for workload in workloads:
                    size = max(tasks, workload.batch)
                    for offset in range(len(systems)):
                        name, run = systems[(round_ + offset) % len(systems)]
                        latencies, throughput = await batch(run, workload, size)
                        samples[workload.name, name][0].extend(latencies)
                        samples[workload.name, name][1].append(throughput)
                        print(
                            f"  {latency_ms:g} ms model, round {round_ + 1}, "
                            f"{workload.name}, {name}: {throughput:.1f} tasks/s",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        for client in clients.values():
            await client.stop()
    return samples


def report(results: dict[float, Samples], command: str, broker_kind: str) -> str:
    rows = []
    for latency_ms, samples in results.items():
        for workload in WORKLOADS:
            for (name, system), (latencies, rates) in samples.items():
                if name != workload.name:
                    continue
                s = Summary.of([x * 1000 for x in latencies])
                rate = sorted(rates)[len(rates) // 2]
                rows.append(
                    f"| {workload.description} | {latency_ms:g} | {system} | "
                    f"{s.p50:.1f} | {s.p99:.1f} | {rate:.1f} |"
                )
    return f"""
Command: `{command}` (broker: {broker_kind})

Client-side time from submit to the terminal record (the final state for LangGraph); tasks/s
is the median over rounds. All systems call one mock model over HTTP; the mesh runs every
agent and its keeper as its own process, LangGraph runs in the measuring process.

| workload | model ms | system | p50 ms | p99 ms | tasks/s |
| --- | ---: | --- | ---: | ---: | ---: |
{chr(10).join(rows)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--latency-ms",
        type=float,
        nargs="+",
        default=[0.0, 50.0],
        help="mock model latency per call, milliseconds (default: 0 50)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--tasks", type=int, default=20, help="tasks per system, workload and round (default 20)"
    )
    names = [w.name for w in WORKLOADS]
    parser.add_argument(
        "--workloads",
        nargs="+",
        choices=names,
        default=names,
        help="run only these workloads (default: all)",
    )
    parser.add_argument("--out", type=Path, help="also write the section into this file")
    args = parser.parse_args()
    workloads = [w for w in WORKLOADS if w.name in args.workloads]
    command = (
        "python benchmarks/peers/compare.py --latency-ms "
        + " ".join(f"{x:g}" for x in args.latency_ms)
        + f" --rounds {args.rounds} --tasks {args.tasks}"
    )
    if len(workloads) < len(WORKLOADS):
        command += " --workloads " + " ".join(w.name for w in workloads)
    results = {}
    with broker_session() as broker, tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        workdir = Path(tmp)
        for latency_ms in args.latency_ms:
            script = workdir / f"model-{latency_ms:g}.yaml"
            script.write_text(yaml.safe_dump(model_script(latency_ms)))
            server, base_url = start_model_server_process(script)
            try:
                with running_meshes(
                    broker.bootstrap,
                    base_url,
                    workdir,
                    f"{latency_ms:g}ms",
                    [w.name for w in workloads],
                ) as prefixes:
                    results[latency_ms] = asyncio.run(
                        measure(
                            broker.bootstrap,
                            prefixes,
                            base_url,
                            workdir,
                            latency_ms,
                            args.rounds,
                            args.tasks,
                            workloads,
                        )
                    )
            finally:
                stop_model_server_process(server)
        body = report(results, command, broker.kind)
    publish("Peers", args.out, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
