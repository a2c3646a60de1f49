"""``choreo bench state``: how fast the keeper folds deltas, and how fast it replays a log.

The workload is a fan-out: three agents take turns writing to every kind of field (append,
add, set_union, merge, replace), each step reading a version up to two behind, so replace
fields meet real conflicts. Folds are timed in-process on the pure transition; replay is timed
over a real outbox on the broker: reading it back, then applying it in a fresh keeper (decode,
dedupe, fold, outputs), which is what ``choreo replay`` and a keeper rebuild do.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from choreo.kafka.clients import acked, make_producer, read_topic
from choreo.kafka.topics import ensure_topics
from choreo.keeper import fold as transitions
from choreo.keeper.fold import TASK_SOURCE
from choreo.keeper.replay import replay
from choreo.observe.settings import Settings
from choreo.schemas import Envelope, Task, encode
from choreo.schemas.ids import derive_event_id, new_id
from choreo.schemas.records import ADMIT
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, parse_mesh

AGENTS = ("alpha", "beta", "gamma")
STEPS_PER_TRACE = 10
SEED = 7


@dataclass(frozen=True)
class StateBench:
    folds: int
    fold_seconds: float
    conflicts: int
    records: int
    traces: int
    read_seconds: float
    apply_seconds: float

    @property
    def folds_per_s(self) -> float:
        return self.folds / self.fold_seconds

    @property
    def replay_per_s(self) -> float:
        return self.records / (self.read_seconds + self.apply_seconds)

    @property
    def apply_per_s(self) -> float:
        return self.records / self.apply_seconds


def bench_spec() -> MeshSpec:
    agent = {
        "subscribe": ["work.requested"],
        "persona": "p",
        "model": "m",
        "routes": [{"emit": "work.requested"}],
    }
    return parse_mesh(
        {
            "name": "bench-state",
            "entry": ["work.requested"],
            "state": {
                "log": {"reducer": "append"},
                "n": {"reducer": "add", "default": 0},
                "tags": {"reducer": "set_union"},
                "doc": {"reducer": "merge"},
                "last": {"reducer": "replace"},
            },
            "models": {"m": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}},
            "agents": [{"name": name, **agent} for name in AGENTS],
            "budgets": {"max_hops": STEPS_PER_TRACE + 1},
        }
    )


def admission(trace_id: str) -> Envelope:
    """The ``trace.admit`` record the keeper logs for a task."""
    origin = f"bench/{trace_id}"
    task = Task(input=f"bench {trace_id}", trace_id=trace_id)
    return Envelope(
        event_id=derive_event_id(origin, TASK_SOURCE),
        trace_id=trace_id,
        type=ADMIT,
        source=TASK_SOURCE,
        payload={"task": msgspec.to_builtins(task), "origin": origin},
    )


def steps(trace_id: str, rnd: random.Random) -> Iterator[Envelope]:
    """One trace's steps: agents in turn, each reading a version up to two behind."""
    for index in range(STEPS_PER_TRACE):
        agent = AGENTS[index % len(AGENTS)]
        version = index + 1
        yield Envelope(
            event_id=derive_event_id(f"{trace_id}/{index}", agent),
            trace_id=trace_id,
            type="work.requested",
            source=agent,
            hop=index + 1,
            state_version=max(1, version - rnd.randint(0, 2)),
            delta={
                "log": f"{agent} step {index}",
                "n": rnd.randint(1, 5),
                "tags": [rnd.choice("abcdefgh")],
                "doc": {agent: index},
                "last": f"{agent}:{index}",
            },
        )


def fold_rate(spec: MeshSpec, deltas: int) -> tuple[int, float, int]:
    """Fold ``deltas`` steps in-process; return (folds, seconds, conflicts)."""
    rnd = random.Random(SEED)
    at = datetime(2025, 1, 1, tzinfo=UTC)
    traces = [f"fold-{i}" for i in range(max(1, deltas // STEPS_PER_TRACE))]
    work = [
        (transitions.admit(spec, Task(input="bench"), t, "bench", at), list(steps(t, rnd)))
        for t in traces
    ]
    folds = conflicts = 0
    started = time.perf_counter()
    for snapshot, trace_steps in work:
        for number, step in enumerate(trace_steps, start=1):
            folded = transitions.fold(spec, snapshot, step, at + timedelta(milliseconds=number))
            snapshot = folded.snapshot
            conflicts += len(folded.conflicts)
            folds += 1
    return folds, time.perf_counter() - started, conflicts


async def _write_outbox(bootstrap: str, topic: str, traces: int) -> int:
    rnd = random.Random(SEED)
    producer = make_producer(bootstrap, "choreo-bench-state")
    await producer.start()
    try:
        records = [
            (trace_id, envelope)
            for trace_id in (f"replay-{i}" for i in range(traces))
            for envelope in (admission(trace_id), *steps(trace_id, rnd))
        ]
        await acked(
            producer.send(topic, encode(envelope), key=trace_id.encode())
            for trace_id, envelope in records
        )
        return len(records)
    finally:
        await producer.stop()


def run(bootstrap: str, settings: Settings, deltas: int, traces: int) -> StateBench:
    spec = bench_spec()
    folds, fold_seconds, conflicts = fold_rate(spec, deltas)
    topics = Topics(f"bench-state-{new_id()[:8]}")
    asyncio.run(ensure_topics(bootstrap, topics, spec))
    written = asyncio.run(_write_outbox(bootstrap, topics.outbox, traces))
    started = time.perf_counter()
    records = asyncio.run(read_topic(bootstrap, settings, topics.outbox))
    read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    keeper = replay(spec, topics, records)
    apply_seconds = time.perf_counter() - started
    if len(records) != written or len(keeper.traces) != traces:
        raise RuntimeError(
            f"replay read {len(records)} of {written} records and rebuilt "
            f"{len(keeper.traces)} of {traces} traces"
        )
    return StateBench(
        folds, fold_seconds, conflicts, len(records), traces, read_seconds, apply_seconds
    )


def report(result: StateBench, command: str, broker_kind: str) -> str:
    return f"""
Command: `{command}` (broker: {broker_kind})

Workload: three agents write to one trace in turns, each step reading a version up to two
behind (so replace fields conflict: {result.conflicts} conflicts in {result.folds} folds);
every step writes an append, a counter, a set union, a dict merge and a replace field.
{STEPS_PER_TRACE} steps per trace.

| measure | records | seconds | rate |
| --- | ---: | ---: | ---: |
| fold (pure transition, in-process) | {result.folds} | {result.fold_seconds:.3f} | {result.folds_per_s:,.0f} folds/s |
| replay: read the outbox from the broker | {result.records} | {result.read_seconds:.3f} | {result.records / result.read_seconds:,.0f} records/s |
| replay: apply in a fresh keeper | {result.records} | {result.apply_seconds:.3f} | {result.apply_per_s:,.0f} records/s |
| replay, end to end ({result.traces} traces) | {result.records} | {result.read_seconds + result.apply_seconds:.3f} | {result.replay_per_s:,.0f} records/s |

A fold includes the conflict check and the snapshot size check (one encode of the snapshot);
applying adds decoding, the duplicate check and building the outputs (hop record, forward).
"""  # noqa: E501
