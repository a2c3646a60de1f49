"""Scale-out: throughput of one mesh with 1, 2 and 4 replicas of each agent.

    python benchmarks/peers/scaling.py --latency-ms 200 --replicas 1 2 4 --concurrency 1

The mesh is a two-agent chain on one mock model whose every call takes ``--latency-ms``; each
agent process may hold ``--concurrency`` model calls at once (its tier's ``concurrency``), so
the model is the bottleneck and one replica serves at most ``concurrency / latency`` steps a
second. For each replica count a fresh mesh starts, the benchmark waits until every replica
holds partitions of its consumer group (its "partitions assigned" log line), then keeps
``--in-flight`` tasks in flight for ``--tasks`` tasks per round and reports tasks per second
(median over rounds) against the ideal of perfect scaling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mesh_side import MeshClient
from workloads import model_script, step_persona

from choreo.bench.stats import publish
from choreo.kafka.broker import broker_session
from choreo.local.launch import start_mesh
from choreo.local.processes import ProcessGroup
from choreo.model_server.process import start_model_server_process, stop_model_server_process
from choreo.observe.settings import Settings
from choreo.spec.mesh import load_mesh

CHAIN = 2
#: Enough partitions per topic for the largest replica count to get some each.
PARTITIONS = 8


def scaled_chain(base_url: str, replicas: int, concurrency: int) -> dict[str, Any]:
    """A ``CHAIN``-agent chain, ``replicas`` processes per agent, ``concurrency`` calls each."""
    agents = [
        {
            "name": f"step-{i}",
            "subscribe": [f"step.{i}"],
            "persona": step_persona(i),
            "model": "mock",
            "replicas": replicas,
            "reads": ["input"],
            "writes": {"last": "{output}"},
            "routes": [
                {"emit": f"step.{i + 1}"} if i < CHAIN else {"finish": True, "output": "last"}
            ],
        }
        for i in range(1, CHAIN + 1)
    ]
    return {
        "name": f"scale-{replicas}",
        "entry": ["step.1"],
        "state": {"last": {"reducer": "replace"}},
        "topics": {"partitions": PARTITIONS},
        "models": {
            "mock": {"model": "peer-bench", "base_url": base_url, "concurrency": concurrency}
        },
        "agents": agents,
        "budgets": {"max_hops": CHAIN + 2, "max_seconds": 600},
    }


def latest_assignment(log: Path) -> set[str]:
    """The partitions an agent replica's log says it holds since its last rebalance."""
    held: set[str] = set()
    for line in log.read_text().splitlines():
        if '"partitions assigned"' in line:
            held = set(json.loads(line).get("partitions", []))
    return held


async def replicas_assigned(group: ProcessGroup, replicas: int, timeout_s: float = 120.0) -> None:
    """Wait until, for every agent, each replica holds partitions and together they hold all.

    Raises TimeoutError otherwise: a throughput taken mid-rebalance would measure the
    rebalance, not the replicas."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = []
        for i in range(1, CHAIN + 1):
            held = [
                latest_assignment(group.find(f"step-{i}-{r}").log_path)
                for r in range(1, replicas + 1)
            ]
            ready.append(all(held) and len(set().union(*held)) == PARTITIONS)
        if all(ready):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"agent replicas not all assigned after {timeout_s:g}s")
        await asyncio.sleep(0.5)


async def throughput(client: MeshClient, tasks: int, in_flight: int) -> float:
    """Tasks per second over ``tasks`` tasks, keeping ``in_flight`` of them running."""
    slots = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with slots:
            await client.run(f"task {n}", timeout_s=600)

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(tasks)))
    return tasks / (time.perf_counter() - started)


async def measure(
    bootstrap: str, prefix: str, group: ProcessGroup, replicas: int, args: argparse.Namespace
) -> list[float]:
    """Tasks/s of each round for the running mesh under ``prefix``."""
    await replicas_assigned(group, replicas)
    client = MeshClient(bootstrap, prefix)
    await client.start()
    try:
        await throughput(client, args.in_flight, args.in_flight)  # warm-up
        rates = []
        for round_ in range(args.rounds):
            rates.append(await throughput(client, args.tasks, args.in_flight))
            print(
                f"  {replicas} replicas, round {round_ + 1}: {rates[-1]:.2f} tasks/s",
                file=sys.stderr,
                flush=True,
            )
        return rates
    finally:
        await client.stop()


def report(
    rates: dict[int, list[float]], args: argparse.Namespace, command: str, broker_kind: str
) -> str:
    """The Markdown section: tasks/s per replica count against perfect scaling."""
    ideal = args.concurrency / (args.latency_ms / 1000)
    base = sorted(rates[min(rates)])[len(rates[min(rates)]) // 2] / min(rates)
    rows = []
    for replicas, samples in sorted(rates.items()):
        median = sorted(samples)[len(samples) // 2]
        rows.append(f"| {replicas} | {median:.2f} | {median / base:.2f} | {ideal * replicas:.1f} |")
    return f"""
Command: `{command}` (broker: {broker_kind})

A {CHAIN}-agent chain on a mock model answering in {args.latency_ms:g} ms, each agent process
holding at most {args.concurrency} model call(s) at once (the tier's `concurrency`), so one
replica can serve at most {ideal:.1f} steps/s per agent; {args.in_flight} tasks in flight,
{args.tasks} tasks per round, median of {args.rounds} rounds. Topics have {PARTITIONS}
partitions; each count starts a fresh mesh and times it once every replica holds partitions.

| replicas per agent | tasks/s | speed-up over the first row | ideal tasks/s |
| ---: | ---: | ---: | ---: |
{chr(10).join(rows)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=200.0,
        help="mock model latency per call, milliseconds (default 200)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        nargs="+",
        default=[1, 2, 4],
        help="replica counts per agent to measure (default: 1 2 4)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="model calls one agent process holds at once (default 1)",
    )
    parser.add_argument(
        "--in-flight", type=int, default=32, help="tasks kept in flight (default 32)"
    )
    parser.add_argument("--tasks", type=int, default=100, help="tasks per round (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per count (default 3)")
    parser.add_argument("--out", type=Path, help="also write the section into this file")
    args = parser.parse_args()
    command = (
        f"python benchmarks/peers/scaling.py --latency-ms {args.latency_ms:g} "
        f"--replicas {' '.join(map(str, args.replicas))} --concurrency "
        f"{args.concurrency} --in-flight {args.in_flight} --tasks {args.tasks} "
        f"--rounds {args.rounds}"
    )
    rates: dict[int, list[float]] = {}
    with broker_session() as broker, tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        workdir = Path(tmp)
        script = workdir / "model.yaml"
        script.write_text(yaml.safe_dump(model_script(args.latency_ms)))
        server, base_url = start_model_server_process(script)
        try:
            for replicas in args.replicas:
                prefix = f"scale-{replicas}-{int(time.time())}"
                path = workdir / f"{prefix}.yaml"
                path.write_text(yaml.safe_dump(scaled_chain(base_url, replicas, args.concurrency)))
                with start_mesh(
                    load_mesh(path),
                    path,
                    broker.bootstrap,
                    Settings(topic_prefix=prefix),
                    workdir / "logs" / prefix,
                    watchdog=False,
                    env={"CHOREO_TOPIC_PREFIX": prefix},
                ) as group:
                    rates[replicas] = asyncio.run(
                        measure(broker.bootstrap, prefix, group, replicas, args)
                    )
        finally:
            stop_model_server_process(server)
        body = report(rates, args, command, broker.kind)
    publish("Scale-out", args.out, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
