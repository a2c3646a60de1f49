"""Soak under SIGKILL: a random agent replica or the keeper is killed every few seconds.

The writer/editor mesh (two replicas per agent) serves ``--tasks`` tasks while, every
``--kill-every`` seconds, one of its Kafka services (the keeper or an agent replica, chosen at
random) gets SIGKILL and is started again at once. When every task has ended, or
``--timeout`` passes, it counts the terminal records per task: none may be missing and none
may be doubled.

    python -m benchmarks.soak --tasks 500 --kill-every 4

With ``--kills N`` the tasks are fed in N equal parts instead, and each kill comes once the
first task of its part has ended, while the rest are in flight (``kill_mid_flight``);
``--kill-every`` is then unused. ``--target keeper`` (or ``agent``)
kills only that. ``--exactly-once`` then also reads every output topic (results, hops, state,
outbox, every event topic, escalations, conflicts, dead letters) with ``read_committed`` and
counts records written twice: on Apache Kafka, whose transactions the services use, there
must be none (docs/ARCHITECTURE.md, "Delivery guarantees").

    python -m benchmarks.soak --target keeper --kills 200 --tasks 3000 \
        --exactly-once    # with KAFKA_BOOTSTRAP_SERVERS set to an Apache Kafka
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from choreo.client import Client
from choreo.kafka.broker import broker_session
from choreo.kafka.clients import read_topic
from choreo.local.launch import start_mesh
from choreo.local.processes import ProcessGroup
from choreo.observe.settings import Settings
from choreo.schemas import Budget, TerminalResult, decode
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "writer-editor"


@dataclass
class SoakReport:
    """What a soak did and what came out of it."""

    tasks: int
    kills: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    missing: int = 0
    doubled: int = 0
    seconds: float = 0.0
    #: Records written twice, per output topic (read only with ``exactly_once``).
    duplicates: Counter[str] = field(default_factory=Counter)
    #: Services that exited on their own (fenced, say) and were started again.
    exits: Counter[str] = field(default_factory=Counter)
    #: Where and what each record written twice is (benchmarks.failover_soak).
    details: list[dict[str, object]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.doubled == 0 and not self.duplicates

    def summary(self) -> dict[str, object]:
        return {
            "tasks": self.tasks,
            "kills": dict(self.kills),
            "kills_total": sum(self.kills.values()),
            "statuses": dict(self.statuses),
            "missing": self.missing,
            "doubled": self.doubled,
            "duplicates": dict(self.duplicates),
            "exits": dict(self.exits),
            "seconds": self.seconds,
            "ok": self.ok,
        }


def prepare_mesh(folder: Path, replicas: int) -> Path:
    """A copy of the writer/editor example with ``replicas`` of each agent."""
    shutil.copytree(EXAMPLE, folder, dirs_exist_ok=True)
    path = folder / "mesh.yaml"
    raw = yaml.safe_load(path.read_text())
    for agent in raw["agents"]:
        agent["replicas"] = replicas
    path.write_text(yaml.safe_dump(raw))
    return path


async def submit_all(
    bootstrap: str, settings: Settings, count: int, max_seconds: float
) -> list[str]:
    """Submit ``count`` tasks at once (the client's producer batches them); their trace ids."""
    budget = Budget(max_seconds=max_seconds)
    async with Client(bootstrap, settings=settings, client_id="soak") as client:
        sends = (
            client.submit(f"soak task {n}", trace_id=f"soak-{uuid.uuid4()}", budget=budget)
            for n in range(count)
        )
        return list(await asyncio.gather(*sends))


def ended(bootstrap: str, settings: Settings) -> list[TerminalResult]:
    records = asyncio.run(read_topic(bootstrap, settings, Topics(settings.topic_prefix).results))
    return [decode(r.value, TerminalResult) for r in records]


def kill_one(group: ProcessGroup, rng: random.Random, target: str = "any") -> str:
    """SIGKILL a random keeper or agent replica (``target``: ``any``, ``keeper``, ``agent``)
    and start it again; return its name."""
    victims = [
        c
        for c in group.children
        if not c.name.startswith(("model-", "sandbox"))
        and (target == "any" or (c.name == "keeper") == (target == "keeper"))
    ]
    child = rng.choice(victims)
    assert child.process is not None
    child.process.send_signal(signal.SIGKILL)
    child.process.wait()
    group.restart(child)
    return child.name


def restart_exited(group: ProcessGroup, report: SoakReport) -> None:
    """Start again every service that exited on its own, as its supervisor would."""
    for child in group.failed():
        report.exits[child.name] += 1
        group.restart(child)


#: How a record of each kind of output topic is told apart from another: two records with
#: the same identity are the same record written twice.
def identity_of(kind: str, record: dict[str, object], raw: bytes) -> object:
    if kind == "results":
        return record.get("trace_id")
    if kind == "hops":
        return record.get("trace_id"), record.get("event_id")
    if kind == "state":  # a full snapshot and the delta of one version are two records
        return record.get("trace_id"), record.get("version"), "base_version" in record
    if kind in ("outbox", "events"):
        return record.get("event_id")
    if kind == "escalations":
        return record.get("trace_id"), record.get("escalation_id")
    return raw  # conflicts, dead letters: the whole record


def output_topics(spec: MeshSpec, topics: Topics) -> dict[str, str]:
    """Every topic the keeper and agents write, with its kind (for ``identity_of``)."""
    kinds = {
        topics.results: "results",
        topics.hops: "hops",
        topics.state: "state",
        topics.outbox: "outbox",
        topics.escalations: "escalations",
        topics.conflicts: "conflicts",
        topics.dlq: "dlq",
    }
    for agent in spec.agents:
        for event_type in agent.subscribe:
            kinds[topics.event(event_type)] = "events"
    return kinds


def duplicates(bootstrap: str, settings: Settings, spec: MeshSpec) -> Counter[str]:
    """Records written twice, per output topic, as a ``read_committed`` reader sees them."""
    found: Counter[str] = Counter()
    for topic, kind in output_topics(spec, Topics(settings.topic_prefix)).items():
        seen: set[object] = set()
        for rec in asyncio.run(read_topic(bootstrap, settings, topic)):
            if rec.value is None:
                continue  # a tombstone (the state log's replaced deltas): a delete, not a write
            raw = rec.value
            try:
                identity = identity_of(kind, json.loads(raw), raw)
            except (ValueError, AttributeError):
                identity = raw
            if identity in seen:
                found[topic] += 1
            seen.add(identity)
    return found


def kill_mid_flight(
    group: ProcessGroup,
    rng: random.Random,
    target: str,
    bootstrap: str,
    settings: Settings,
    count: int,
    max_seconds: float,
    report: SoakReport,
) -> set[str]:
    """Submit ``count`` tasks, wait until the first of them has ended (so the services are
    mid-batch: the others are in flight, their steps being folded and forwarded), then
    SIGKILL a ``target`` at a random moment of the next half second. Returns the traces."""
    restart_exited(group, report)
    traces = set(asyncio.run(submit_all(bootstrap, settings, count, max_seconds)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        traces & {r.trace_id for r in ended(bootstrap, settings)}
    ):
        time.sleep(0.2)  # polling a condition, bounded by the deadline
    time.sleep(rng.uniform(0, 0.5))  # where in its cycle the victim dies: any point
    report.kills[kill_one(group, rng, target)] += 1
    return traces


def soak(
    bootstrap: str,
    work_dir: Path,
    tasks: int,
    kill_every_s: float,
    timeout_s: float,
    seed: int,
    replicas: int = 2,
    *,
    kills: int | None = None,
    target: str = "any",
    exactly_once: bool = False,
) -> SoakReport:
    """Run the soak on the broker at ``bootstrap``; logs go under ``work_dir``.

    With ``kills``, tasks are fed in that many parts, one before each kill, and killing
    stops after it; ``exactly_once`` also counts duplicate records on every output topic.
    """
    rng = random.Random(seed)
    mesh_path = prepare_mesh(work_dir / "mesh", replicas)
    spec = load_mesh(mesh_path)
    prefix = f"soak{uuid.uuid4().hex[:8]}"
    settings = Settings(topic_prefix=prefix, session_timeout_ms=6000)
    env = {
        "CHOREO_TOPIC_PREFIX": prefix,
        "CHOREO_SESSION_TIMEOUT_MS": "6000",
        "CHOREO_LOG_LEVEL": "INFO",
    }
    if "CHOREO_EXACTLY_ONCE" in os.environ:
        env["CHOREO_EXACTLY_ONCE"] = os.environ["CHOREO_EXACTLY_ONCE"]
    report = SoakReport(tasks)
    parts = [tasks // kills + (n < tasks % kills) for n in range(kills)] if kills else []
    with start_mesh(
        spec, mesh_path, bootstrap, settings, work_dir / "logs", watchdog=False, env=env
    ) as group:
        # deadlines far beyond the soak: a task that ends must end by being served
        started = time.monotonic()
        traces: set[str] = set()
        for part in parts:
            traces |= kill_mid_flight(
                group, rng, target, bootstrap, settings, part, 4 * timeout_s, report
            )
        if not kills:
            traces = set(asyncio.run(submit_all(bootstrap, settings, tasks, 4 * timeout_s)))
        next_kill = time.monotonic() + kill_every_s
        while time.monotonic() - started < timeout_s:
            restart_exited(group, report)
            if traces <= {r.trace_id for r in ended(bootstrap, settings)}:
                break
            if not kills and time.monotonic() >= next_kill:
                report.kills[kill_one(group, rng, target)] += 1
                next_kill = time.monotonic() + kill_every_s
            time.sleep(1.0)  # the soak's own pace: checks and kills, not synchronisation
        report.seconds = round(time.monotonic() - started, 1)
        results = [r for r in ended(bootstrap, settings) if r.trace_id in traces]
        if exactly_once:
            report.duplicates = duplicates(bootstrap, settings, spec)
    report.tasks = len(traces)
    per_trace = Counter(r.trace_id for r in results)
    report.statuses = Counter(r.status for r in {r.trace_id: r for r in results}.values())
    report.missing = len(traces - set(per_trace))
    report.doubled = sum(1 for n in per_trace.values() if n > 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between kills")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the soak")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kills",
        type=int,
        default=None,
        help="stop after this many kills, feeding tasks before each",
    )
    parser.add_argument("--target", choices=("any", "keeper", "agent"), default="any")
    parser.add_argument(
        "--exactly-once",
        action="store_true",
        help="also count records written twice on every output topic",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the mesh on SIGTERM too
    with (
        broker_session(allow_docker=False) as broker,
        tempfile.TemporaryDirectory(prefix="choreo-soak-") as work,
    ):
        report = soak(
            broker.bootstrap,
            Path(work),
            args.tasks,
            args.kill_every,
            args.timeout,
            args.seed,
            kills=args.kills,
            target=args.target,
            exactly_once=args.exactly_once,
        )
    print(json.dumps(report.summary(), indent=2))
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
