"""Failover soak: brokers of a three-node Apache Kafka cluster die under a steady stream of tasks.

The writer/editor mesh (two replicas per agent, its scripted model answering slowly, so model
calls are held open across each fault) runs on a cluster of three nodes (``KafkaCluster``:
replication 3, min in-sync 2, each node a broker and a controller) while a feeder submits a
task every ``--interval`` seconds. Faults, one after the other, each waiting until every
partition of the mesh has all its replicas in sync again:

- ``leader``: SIGKILL the node leading the most partitions of the mesh's topics, keep it down
  ``--down`` seconds, start it again on its storage;
- ``controller``: the same for the active controller (the metadata log's leader);
- ``rolling``: a controlled shutdown (SIGTERM) and restart of every node in turn.

Then it waits for every task to end and reads every output topic ``read_committed``: none may
be missing, ended twice or written twice, and no service may have exited (the services ride
out each fault; one that exits is started again and counted).

    python -m benchmarks.failover_soak --faults leader,controller,rolling,leader,controller \\
        --interval 0.5 --latency-ms 1500 --down 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.soak import (
    SoakReport,
    duplicates,
    ended,
    identity_of,
    output_topics,
    prepare_mesh,
    restart_exited,
)
from choreo.client import Client
from choreo.kafka.clients import read_topic
from choreo.kafka.cluster import ClusterNode, KafkaCluster, active_controller
from choreo.local.launch import start_mesh
from choreo.local.processes import ProcessGroup
from choreo.observe.settings import Settings
from choreo.schemas import Budget
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh

FAULTS = ("leader", "controller", "rolling")


async def _partitions(bootstrap: str, topics: list[str]) -> list[dict[str, Any]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        return [p for t in await admin.describe_topics(topics) for p in t["partitions"]]
    finally:
        await admin.close()


def mesh_topics(spec: MeshSpec, settings: Settings) -> list[str]:
    topics = Topics(settings.topic_prefix)
    return topics.system() + [topics.event(t) for t in spec.agent_topics]


def busiest_leader(cluster: KafkaCluster, names: list[str]) -> ClusterNode:
    """The node that leads the most partitions of ``names``."""
    leaders = Counter(p["leader"] for p in asyncio.run(_partitions(cluster.bootstrap, names)))
    return cluster.node(int(leaders.most_common(1)[0][0]))


def controller(cluster: KafkaCluster) -> ClusterNode:
    node = next(n for n in cluster.nodes if n.running)
    return cluster.node(active_controller("127.0.0.1", node.port))


def wait_in_sync(cluster: KafkaCluster, names: list[str], timeout_s: float) -> float:
    """Wait until every partition of ``names`` has all its replicas in sync (a node back from
    a fault has caught up); return the seconds waited. Raises ``TimeoutError``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        parts: list[dict[str, Any]] = []
        with contextlib.suppress(Exception):  # a node is still starting: ask again
            parts = asyncio.run(_partitions(cluster.bootstrap, names))
        if parts and all(len(p["isr"]) == len(p["replicas"]) for p in parts):
            return time.monotonic() - started
        time.sleep(1.0)  # polling a condition, bounded by the deadline
    raise TimeoutError(f"replicas of {len(names)} topics not back in sync in {timeout_s:.0f}s")


class Feeder(threading.Thread):
    """Submits a task every ``interval`` seconds until stopped; ``traces`` holds their ids.
    One client for the whole run, as a front end would hold one."""

    def __init__(self, bootstrap: str, settings: Settings, interval: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.bootstrap, self.settings, self.interval = bootstrap, settings, interval
        self.traces: list[str] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._feed())
        except BaseException as exc:  # reported by the soak, not lost in a thread
            self.error = exc

    async def _feed(self) -> None:
        budget = Budget(max_seconds=3600)
        async with Client(self.bootstrap, settings=self.settings, client_id="feeder") as client:
            while not self.stopping.is_set():
                trace_id = f"failover-{uuid.uuid4()}"
                await client.submit(f"task {len(self.traces)}", trace_id=trace_id, budget=budget)
                self.traces.append(trace_id)
                await asyncio.sleep(self.interval)


def written_twice(bootstrap: str, settings: Settings, spec: MeshSpec) -> list[dict[str, Any]]:
    """Each record written twice on an output topic, as a ``read_committed`` reader sees it:
    where both copies are and what the record is (its type, source, trace), to tell a
    repeated input from a repeated output."""
    found = []
    for topic, kind in output_topics(spec, Topics(settings.topic_prefix)).items():
        seen: dict[object, int] = {}
        for rec in asyncio.run(read_topic(bootstrap, settings, topic)):
            raw = rec.value or b""
            try:
                body = json.loads(raw)
                identity = identity_of(kind, body, raw)
            except (ValueError, AttributeError):
                body, identity = {}, raw
            if identity in seen:
                found.append(
                    {
                        "topic": topic,
                        "partition": rec.partition,
                        "offsets": [seen[identity], rec.offset],
                        **{k: body.get(k) for k in ("type", "source", "trace_id", "event_id")},
                    }
                )
            seen[identity] = rec.offset
    return found


def slow_mesh(folder: Path, latency_ms: int) -> Path:
    """The writer/editor example, two replicas per agent, its model answering in
    ``latency_ms``; topics left to the cluster's replication defaults."""
    path = prepare_mesh(folder, replicas=2)
    script = folder / "model.yaml"
    raw = yaml.safe_load(script.read_text())
    raw["latency_ms"] = latency_ms
    script.write_text(yaml.safe_dump(raw))
    return path


def apply_fault(
    fault: str, cluster: KafkaCluster, names: list[str], down_s: float, report: SoakReport
) -> None:
    """One fault, then wait until the cluster is whole again."""
    if fault == "rolling":
        for node in cluster.nodes:
            node.halt()
            node.resume()
            report.kills[f"restart node {node.node_id}"] += 1
            wait_in_sync(cluster, names, 300)
        return
    victim = busiest_leader(cluster, names) if fault == "leader" else controller(cluster)
    victim.kill()
    report.kills[f"kill {fault} (node {victim.node_id})"] += 1
    time.sleep(down_s)  # the fault itself: the node stays dead this long
    victim.resume()
    wait_in_sync(cluster, names, 300)


def failover_soak(
    cluster: KafkaCluster,
    work_dir: Path,
    faults: list[str],
    *,
    interval_s: float = 0.5,
    latency_ms: int = 300,
    down_s: float = 15.0,
    settle_s: float = 10.0,
    timeout_s: float = 600.0,
) -> SoakReport:
    """Run the soak on the running ``cluster``; logs go under ``work_dir``."""
    mesh_path = slow_mesh(work_dir / "mesh", latency_ms)
    spec = load_mesh(mesh_path)
    prefix = f"failover{uuid.uuid4().hex[:8]}"
    settings = Settings(topic_prefix=prefix, session_timeout_ms=6000)
    env = {
        "CHOREO_TOPIC_PREFIX": prefix,
        "CHOREO_SESSION_TIMEOUT_MS": "6000",
        "CHOREO_LOG_LEVEL": "INFO",
    }
    report = SoakReport(0)
    names = mesh_topics(spec, settings)
    started = time.monotonic()
    group: ProcessGroup
    with start_mesh(
        spec, mesh_path, cluster.bootstrap, settings, work_dir / "logs", watchdog=False, env=env
    ) as group:
        feeder = Feeder(cluster.bootstrap, settings, interval_s)
        feeder.start()
        try:
            time.sleep(settle_s)  # a steady stream is flowing before the first fault
            for fault in faults:
                apply_fault(fault, cluster, names, down_s, report)
                restart_exited(group, report)
        finally:
            feeder.stopping.set()
            feeder.join(timeout=60)
        if feeder.error is not None:
            raise feeder.error
        traces = set(feeder.traces)
        while time.monotonic() - started < timeout_s:
            restart_exited(group, report)
            if traces <= {r.trace_id for r in ended(cluster.bootstrap, settings)}:
                break
            time.sleep(1.0)  # polling a condition, bounded by the timeout
        restart_exited(group, report)
        report.seconds = round(time.monotonic() - started, 1)
        results = [r for r in ended(cluster.bootstrap, settings) if r.trace_id in traces]
        report.duplicates = duplicates(cluster.bootstrap, settings, spec)
        if report.duplicates:
            report.details = written_twice(cluster.bootstrap, settings, spec)
    report.tasks = len(traces)
    per_trace = Counter(r.trace_id for r in results)
    report.statuses = Counter(r.status for r in {r.trace_id: r for r in results}.values())
    report.missing = len(traces - set(per_trace))
    report.doubled = sum(1 for n in per_trace.values() if n > 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--faults",
        default="leader,controller,rolling,leader,controller",
        help=f"comma-separated, in order, each one of {', '.join(FAULTS)}",
    )
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between tasks")
    parser.add_argument("--latency-ms", type=int, default=1500, help="per model call")
    parser.add_argument("--down", type=float, default=20.0, help="seconds a killed node stays down")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the soak")
    parser.add_argument(
        "--keep", default=None, metavar="FOLDER", help="work in FOLDER and keep its logs"
    )
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    if unknown := sorted(set(faults) - set(FAULTS)):
        parser.error(f"unknown faults: {', '.join(unknown)}")
    with (
        contextlib.nullcontext(args.keep)
        if args.keep
        else tempfile.TemporaryDirectory(prefix="choreo-failover-")
    ) as work:
        cluster = KafkaCluster(3, log_path=str(Path(work) / "kafka.log")).start()
        try:
            report = failover_soak(
                cluster,
                Path(work),
                faults,
                interval_s=args.interval,
                latency_ms=args.latency_ms,
                down_s=args.down,
                timeout_s=args.timeout,
            )
        finally:
            cluster.stop()
    print(json.dumps({**report.summary(), "written_twice": report.details}, indent=2))
    raise SystemExit(0 if report.ok and not report.exits else 1)


if __name__ == "__main__":
    main()
