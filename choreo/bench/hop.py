"""``choreo bench hop``: what one mesh step costs beyond bare Kafka I/O.

A chain mesh of relay agents (offline scripted model, zero model latency) processes tasks one
at a time, so nothing queues; each step's cost is the time between its outbox record and the
previous step's, which spans keeper fold, forward, agent consume, model call and produce. The
same chain of ``kind: python`` relay agents measures a Python agent's step the same way. The
baseline is a raw aiokafka consume→produce relay through the same broker with the same client
settings, one process per leg. A mesh step is two such legs (agent→keeper→agent) plus work.
Where a whole task's time goes, leg by leg, comes from the records it left (choreo.bench.legs).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from rich.progress import Progress

from choreo.bench.legs import Leg, Timeline, chain_legs, summarize, timeline
from choreo.bench.relay import leg_topic
from choreo.bench.stats import Summary
from choreo.kafka.clients import (
    KAFKA_FETCH_WAIT_MS,
    make_consumer,
    make_producer,
    partitions_of,
    read_topic,
)
from choreo.local.launch import start_mesh
from choreo.local.processes import ProcessGroup
from choreo.observe.settings import Settings
from choreo.observe.terminal import err
from choreo.schemas import HopRecord, Task, TerminalResult, decode, encode
from choreo.schemas.ids import new_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh


@dataclass(frozen=True)
class HopBench:
    mesh_step_ms: Summary
    python_step_ms: Summary
    relay_leg_ms: Summary
    traces: int
    chain: int
    #: Per leg of a task through the model chain (choreo.bench.legs), in order.
    legs: list[tuple[Leg, Summary]]
    task_ms: Summary


#: The Python relay: the same writes and routes as the model relay, decided by code.
PYTHON_RELAY = """import choreo


@choreo.agent
async def relay(step: choreo.Step) -> choreo.Result:
    index = int(step.agent.rsplit("-", 1)[1])
    if index == {length}:
        return step.finish("last", writes={{"last": step.agent}})
    return step.emit(f"hop.{{index + 1}}", {{"last": step.agent}})
"""


def chain_spec(length: int, script: Path, python: bool = False) -> dict[str, Any]:
    """A chain of ``length`` relay agents: model agents, or with ``python`` Python agents
    whose handler is ``bench_relay:relay`` (written next to the mesh by ``measure_mesh``)."""
    agents: list[dict[str, Any]] = []
    for i in range(1, length + 1):
        agent: dict[str, Any] = {"name": f"relay-{i}", "subscribe": [f"hop.{i}"]}
        if python:
            agent |= {
                "kind": "python",
                "handler": "bench_relay:relay",
                "emit": [f"hop.{i + 1}"] if i < length else [],
            }
        else:
            agent |= {
                "persona": f"You are relay {i}.",
                "model": "scripted",
                "writes": {"last": "{agent}"},
                "routes": [
                    {"emit": f"hop.{i + 1}"} if i < length else {"finish": True, "output": "last"}
                ],
            }
        agents.append(agent)
    return {
        "name": "bench-chain",
        "entry": ["hop.1"],
        "agents": agents,
        "models": {"scripted": {"model": "bench", "script": str(script)}},
        "budgets": {"max_hops": length + 1},
    }


async def _one_at_a_time(
    bootstrap: str,
    topics: Topics,
    settings: Settings,
    count: int,
    wait_s: float,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Submit tasks sequentially, each after the previous one's terminal record; return
    each trace id with when its terminal record reached this client (ms since the epoch)."""
    producer = make_producer(bootstrap, "bench")
    consumer = make_consumer(bootstrap, settings, group_id=None, client_id="bench")
    await producer.start()
    await consumer.start()
    parts = [
        TopicPartition(topics.results, p)
        for p in await partitions_of(consumer, topics.results, wait_s)
    ]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    task_bar = progress.add_task("mesh traces", total=count) if progress else None
    seen: dict[str, float] = {}
    try:
        for _ in range(count):
            trace_id = new_id()
            await producer.send_and_wait(
                topics.tasks, encode(Task(input="go", trace_id=trace_id)), key=trace_id.encode()
            )
            finished = False
            deadline = time.monotonic() + wait_s
            while not finished:
                batch = await consumer.getmany(timeout_ms=500)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no terminal record for {trace_id} in {wait_s:.0f} s")
                for records in batch.values():
                    for record in records:
                        result = decode(record.value or b"", TerminalResult)
                        finished = finished or result.trace_id == trace_id
            seen[trace_id] = time.time() * 1000
            if progress is not None and task_bar is not None:
                progress.advance(task_bar)
    finally:
        await consumer.stop()
        await producer.stop()
    return seen


def _step_latencies(hops: list[HopRecord], traces: set[str]) -> list[float]:
    by_trace: dict[str, list[HopRecord]] = defaultdict(list)
    for hop in hops:
        if hop.trace_id in traces:
            by_trace[hop.trace_id].append(hop)
    samples = []
    for trace_hops in by_trace.values():
        ordered = sorted(trace_hops, key=lambda h: h.state_version)
        samples += [
            (b.created_at - a.created_at).total_seconds() * 1000
            for a, b in itertools.pairwise(ordered)
        ]
    return samples


def measure_mesh(
    bootstrap: str, traces: int, chain: int, workdir: Path, progress: Progress, python: bool = False
) -> tuple[list[float], list[Timeline]]:
    """Step latencies (ms) of ``traces`` tasks through the chain, and each task's timeline
    (model chain only; none for ``python``)."""
    workdir = workdir / ("python" if python else "model")
    workdir.mkdir()
    script = workdir / "model.yaml"
    script.write_text(
        yaml.safe_dump({"model": "bench", "latency_ms": 0, "rules": [{"reply": "relayed"}]})
    )
    (workdir / "bench_relay.py").write_text(PYTHON_RELAY.format(length=chain))
    mesh_path = workdir / "mesh.yaml"
    mesh_path.write_text(yaml.safe_dump(chain_spec(chain, script, python)))
    spec = load_mesh(mesh_path)
    prefix = f"bench{'py' if python else ''}{int(time.time())}"
    settings = Settings(topic_prefix=prefix)
    topics = Topics(prefix)
    with start_mesh(
        spec,
        mesh_path,
        bootstrap,
        settings,
        workdir / "logs",
        watchdog=False,
        env={"CHOREO_TOPIC_PREFIX": prefix},
    ):
        asyncio.run(_one_at_a_time(bootstrap, topics, settings, 3, 90.0))  # groups join
        seen = asyncio.run(_one_at_a_time(bootstrap, topics, settings, traces, 30.0, progress))
        # the legs of a task are reported for the model chain only
        logs = asyncio.run(_read_logs(bootstrap, settings, topics, 0 if python else chain))
    hops = [decode(r.value or b"", HopRecord) for r in logs[topics.hops]]
    return _step_latencies(hops, set(seen)), [] if python else _timelines(logs, topics, chain, seen)


async def _read_logs(
    bootstrap: str, settings: Settings, topics: Topics, chain: int
) -> dict[str, list[ConsumerRecord[bytes, bytes]]]:
    """The hop records and, for a ``chain`` of agents (0: none), every other record a task
    leaves: its task, outbox, event and result records."""
    names = [topics.hops]
    if chain:
        names += [topics.tasks, topics.outbox, topics.results]
        names += [topics.event(f"hop.{i}") for i in range(1, chain + 1)]
    return {name: await read_topic(bootstrap, settings, name) for name in names}


def _timelines(
    logs: dict[str, list[ConsumerRecord[bytes, bytes]]],
    topics: Topics,
    chain: int,
    seen: dict[str, float],
) -> list[Timeline]:
    """The timeline of each trace in ``seen`` (trace id → when the client saw its end)."""

    def by_trace(topic: str) -> dict[str, list[ConsumerRecord[bytes, bytes]]]:
        found: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        for record in logs[topic]:
            found[(record.key or b"").decode()].append(record)
        return found

    tasks, outbox, results = (
        by_trace(topics.tasks),
        by_trace(topics.outbox),
        by_trace(topics.results),
    )
    events = {i: by_trace(topics.event(f"hop.{i}")) for i in range(1, chain + 1)}
    return [
        timeline(
            tasks[trace][0].timestamp,
            [(r.timestamp, r.value or b"") for r in outbox[trace]],
            {i: found[trace][0].timestamp for i, found in events.items() if found.get(trace)},
            results[trace][0].timestamp,
            seen_ms,
        )
        for trace, seen_ms in seen.items()
        if tasks.get(trace) and results.get(trace)
    ]


async def _relay_round_trips(
    bootstrap: str, prefix: str, legs: int, count: int, progress: Progress
) -> list[float]:
    settings = Settings()
    producer = make_producer(bootstrap, "bench-relay")
    consumer = make_consumer(bootstrap, settings, group_id=None, client_id="bench-relay")
    await producer.start()
    await consumer.start()
    last = TopicPartition(leg_topic(prefix, legs), 0)
    consumer.assign([last])
    await consumer.seek_to_beginning(last)
    samples: list[float] = []
    bar = progress.add_task("raw relay", total=count + 3)
    try:
        for index in range(count + 3):  # the first three warm the groups up
            started = time.perf_counter()
            await producer.send_and_wait(leg_topic(prefix, 0), b"x" * 512, key=b"k", partition=0)
            batch: dict[TopicPartition, Any] = {}
            deadline = time.monotonic() + 60
            while not batch.get(last):
                if time.monotonic() > deadline:
                    raise TimeoutError("relay did not deliver within 60 s")
                batch = await consumer.getmany(last, timeout_ms=1000)
            if index >= 3:
                samples.append((time.perf_counter() - started) * 1000 / legs)
            progress.advance(bar)
    finally:
        await consumer.stop()
        await producer.stop()
    return samples


def measure_relay(
    bootstrap: str, legs: int, count: int, workdir: Path, progress: Progress
) -> list[float]:
    from aiokafka.admin import NewTopic

    from choreo.kafka.security import make_admin

    prefix = f"relay{int(time.time())}"

    async def create() -> None:
        admin = make_admin(bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(leg_topic(prefix, i), 1, 1) for i in range(legs + 1)]
            )
        finally:
            await admin.close()

    asyncio.run(create())
    with ProcessGroup(workdir / "relay-logs") as group:
        for leg in range(legs):
            group.start(
                f"relay-{leg}",
                [
                    sys.executable,
                    "-P",
                    "-m",
                    "choreo.bench.relay",
                    "--bootstrap",
                    bootstrap,
                    "--prefix",
                    prefix,
                    "--leg",
                    str(leg),
                ],
            )
        return asyncio.run(_relay_round_trips(bootstrap, prefix, legs, count, progress))


def run(bootstrap: str, traces: int, chain: int) -> HopBench:
    with (
        tempfile.TemporaryDirectory(prefix="choreo-bench-") as tmp,
        Progress(console=err, transient=True) as progress,
    ):
        workdir = Path(tmp)
        mesh, timelines = measure_mesh(bootstrap, traces, chain, workdir, progress)
        python, _ = measure_mesh(bootstrap, traces, chain, workdir, progress, python=True)
        relay = measure_relay(bootstrap, chain, traces, workdir, progress)
    topics = [f"hop.{i}" for i in range(1, chain + 1)]
    return HopBench(
        Summary.of(mesh),
        Summary.of(python),
        Summary.of(relay),
        traces,
        chain,
        summarize(chain_legs(chain, topics), timelines),
        Summary.of([t["seen"] - t["task"] for t in timelines]),
    )


#: Column titles of the broker kinds (``choreo.kafka.broker.broker_kind``).
BROKER_TITLES = {"embedded": "embedded broker", "kafka": "Apache Kafka"}


def _cell(s: Summary) -> str:
    return f"{s.p50:.1f} / {s.p90:.1f} / {s.p99:.1f} ({s.count})"


def report(results: dict[str, HopBench], command: str) -> str:
    """One table, a column per broker kind measured (``results`` maps kind → its run)."""
    kinds = list(results)
    first = next(iter(results.values()))

    def row(label: str, cells: list[str]) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    floors = {k: 2 * r.relay_leg_ms.p50 for k, r in results.items()}
    fetch_wait = {
        "embedded": f"`fetch_max_wait_ms` = {Settings().fetch_max_wait_ms}, backing off while idle",
        "kafka": f"`fetch_max_wait_ms` = {KAFKA_FETCH_WAIT_MS}, "
        "long-polling (new data wakes the fetch), "
        + (
            "every service's outputs in transactions (exactly-once, the default)"
            if Settings().exactly_once == "auto"
            else "at-least-once (no transactions)"
        ),
    }
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"{first.traces} tasks, one at a time, through a chain of {first.chain} agents "
            f"(scripted model, zero latency); the baseline relays {first.traces} records through "
            f"{first.chain} raw aiokafka consume→produce processes. On each broker both use the "
            "mesh's client settings for it: "
            + "; ".join(f"{BROKER_TITLES[k]}: {fetch_wait[k]}" for k in kinds)
            + ".",
            "",
            "Each cell: p50 / p90 / p99 in ms (samples).",
            "",
            row("per", [BROKER_TITLES[k] for k in kinds]),
            "| --- |" + " ---: |" * len(kinds),
            row(
                "mesh step (agent → keeper → agent, model call included)",
                [_cell(results[k].mesh_step_ms) for k in kinds],
            ),
            row(
                "mesh step, Python agent (`kind: python`, no model call)",
                [_cell(results[k].python_step_ms) for k in kinds],
            ),
            row(
                "raw relay leg (consume → produce)", [_cell(results[k].relay_leg_ms) for k in kinds]
            ),
            row("floor: two relay legs, p50", [f"{floors[k]:.1f}" for k in kinds]),
            row(
                "the mesh's own work: mesh step minus floor, p50",
                [f"{max(0.0, results[k].mesh_step_ms.p50 - floors[k]):.1f}" for k in kinds],
            ),
            "",
            "A mesh step crosses the broker twice (agent → outbox → keeper → event topic → agent), "
            "so its floor is two relay legs on the same broker. The rest is the mesh's own work: "
            "decoding and validating, the fold, the hop record and snapshot, and the HTTP round "
            "trip to the model server. A Python agent's step runs the same loop with the user's "
            "function in place of the model call.",
            "",
            *_legs_report(results),
        ]
    )


def _legs_report(results: dict[str, HopBench]) -> list[str]:
    """The legs of one task through the model chain, a column per broker kind."""
    kinds = list(results)
    first = next(iter(results.values()))
    by_label = {k: {leg.label: s for leg, s in results[k].legs} for k in kinds}
    rows = [
        f"| {leg.label} | {leg.by} | "
        + " | ".join(
            f"{by_label[k][leg.label].p50:.0f} / {by_label[k][leg.label].p90:.0f}" for k in kinds
        )
        + " |"
        for leg, _ in first.legs
    ]
    return [
        "### Where one task's time goes",
        "",
        f"The same {first.traces} tasks through the model chain, leg by leg: from the "
        "timestamp of one record the task left on the broker (set by its producer as it sent "
        "it) to the next one's; the last leg ends when the client had read the terminal "
        "record. On Apache Kafka a record's timestamp is taken inside its writer's "
        "transaction, so each leg includes the commit of the record before it. Each cell: "
        "p50 / p90 in ms.",
        "",
        "| leg | done by | " + " | ".join(BROKER_TITLES[k] for k in kinds) + " |",
        "| --- | --- |" + " ---: |" * len(kinds),
        *rows,
        "| sum of the legs' p50 | | "
        + " | ".join(f"{sum(s.p50 for _, s in results[k].legs):.0f}" for k in kinds)
        + " |",
        "| whole task, task record to client, p50 / p90 | | "
        + " | ".join(f"{results[k].task_ms.p50:.0f} / {results[k].task_ms.p90:.0f}" for k in kinds)
        + " |",
        "",
    ]
