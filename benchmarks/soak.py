"""Soak under SIGKILL: a random agent replica or the keeper is killed every few seconds.

The writer/editor mesh (two replicas per agent) serves ``--tasks`` tasks while, every
``--kill-every`` seconds, one of its Kafka services (the keeper or an agent replica, chosen at
random) gets SIGKILL and is started again at once. When every task has ended, or
``--timeout`` passes, it counts the terminal records per task: none may be missing and none
may be doubled.

    python -m benchmarks.soak --tasks 500 --kill-every 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from aiokafka import AIOKafkaProducer

from choreo.schemas import Budget, Task, TerminalResult, decode, encode
from choreo.services.cli.launch import start_mesh
from choreo.services.cli.processes import ProcessGroup
from choreo.services.runtime.broker import broker_session
from choreo.services.runtime.kafka import read_topic
from choreo.services.runtime.settings import Settings
from choreo.services.runtime.spec import load_mesh
from choreo.services.runtime.topics import Topics

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

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.doubled == 0

    def summary(self) -> dict[str, object]:
        return {"tasks": self.tasks, "kills": dict(self.kills),
                "kills_total": sum(self.kills.values()), "statuses": dict(self.statuses),
                "missing": self.missing, "doubled": self.doubled, "seconds": self.seconds,
                "ok": self.ok}


def prepare_mesh(folder: Path, replicas: int) -> Path:
    """A copy of the writer/editor example with ``replicas`` of each agent."""
    shutil.copytree(EXAMPLE, folder, dirs_exist_ok=True)
    path = folder / "mesh.yaml"
    raw = yaml.safe_load(path.read_text())
    for agent in raw["agents"]:
        agent["replicas"] = replicas
    path.write_text(yaml.safe_dump(raw))
    return path


async def submit_all(bootstrap: str, topic: str, count: int, max_seconds: float) -> list[str]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        traces = [f"soak-{uuid.uuid4()}" for _ in range(count)]
        sends = [await producer.send(topic, encode(Task(
            input=f"soak task {n}", trace_id=t, budget=Budget(max_seconds=max_seconds))),
            key=t.encode()) for n, t in enumerate(traces)]
        await asyncio.gather(*sends)
        return traces
    finally:
        await producer.stop()


def ended(bootstrap: str, settings: Settings) -> list[TerminalResult]:
    records = asyncio.run(read_topic(bootstrap, settings, Topics(settings.topic_prefix).results))
    return [decode(r.value, TerminalResult) for r in records]


def kill_one(group: ProcessGroup, rng: random.Random) -> str:
    """SIGKILL a random keeper or agent replica and start it again; return its name."""
    victims = [c for c in group.children if not c.name.startswith(("model-", "sandbox"))]
    child = rng.choice(victims)
    assert child.process is not None
    child.process.send_signal(signal.SIGKILL)
    child.process.wait()
    group.restart(child)
    return child.name


def soak(bootstrap: str, work_dir: Path, tasks: int, kill_every_s: float, timeout_s: float,
         seed: int, replicas: int = 2) -> SoakReport:
    """Run the soak on the broker at ``bootstrap``; logs go under ``work_dir``."""
    rng = random.Random(seed)
    mesh_path = prepare_mesh(work_dir / "mesh", replicas)
    spec = load_mesh(mesh_path)
    prefix = f"soak{uuid.uuid4().hex[:8]}"
    settings = Settings(topic_prefix=prefix, session_timeout_ms=6000)
    env = {"CHOREO_TOPIC_PREFIX": prefix, "CHOREO_SESSION_TIMEOUT_MS": "6000",
           "CHOREO_LOG_LEVEL": "INFO"}
    report = SoakReport(tasks)
    with start_mesh(spec, mesh_path, bootstrap, settings, work_dir / "logs", watchdog=False,
                    env=env) as group:
        topic = Topics(prefix).tasks
        # deadlines far beyond the soak: a task that ends must end by being served
        traces = set(asyncio.run(submit_all(bootstrap, topic, tasks, 4 * timeout_s)))
        started = time.monotonic()
        next_kill = started + kill_every_s
        while time.monotonic() - started < timeout_s:
            if traces <= {r.trace_id for r in ended(bootstrap, settings)}:
                break
            if time.monotonic() >= next_kill:
                report.kills[kill_one(group, rng)] += 1
                next_kill = time.monotonic() + kill_every_s
            time.sleep(1.0)  # the soak's own pace: checks and kills, not synchronisation
        report.seconds = round(time.monotonic() - started, 1)
        results = [r for r in ended(bootstrap, settings) if r.trace_id in traces]
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
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the mesh on SIGTERM too
    with broker_session(allow_docker=False) as broker, \
            tempfile.TemporaryDirectory(prefix="choreo-soak-") as work:
        report = soak(broker.bootstrap, Path(work), args.tasks, args.kill_every, args.timeout,
                      args.seed)
    print(json.dumps(report.summary(), indent=2))
    raise SystemExit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
