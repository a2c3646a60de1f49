"""``choreo bench long``: the keeper's cost per step over one long trace (issue 21's workload).

One agent appends a 2 KB line to an ``append`` field and counts a step, for ``steps`` steps in
one trace. The keeper applies each step as it would read it from the outbox (decode, dedupe,
fold, hop record, forward, snapshot) in-process, so what is measured is the keeper's own CPU
and the bytes it would write to the broker per step, by step range: a keeper whose work grows
with the trace's history shows it here before any broker is involved.

The keeper runs under the broker's default record limit (1 MiB, ``choreo.kafka.limits``), as
the live one does: the state is logged as deltas between full snapshots, a snapshot too large
for the limit is put off (choreo.keeper.batch), and the report says whether any record would
pass the limit. Bytes per step are given as medians and as means: a full snapshot is written
now and then, and the mean is what the steps pay for it.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.structs import ConsumerRecord

from choreo.agent.sdk import Result, Step
from choreo.bench.state import admission
from choreo.bench.stats import Summary
from choreo.kafka.limits import RecordLimit
from choreo.keeper.batch import Batch
from choreo.keeper.blobs import DEFAULT_BLOB_BYTES
from choreo.keeper.fold import TASK_SOURCE
from choreo.keeper.machine import Keeper
from choreo.schemas import Envelope, encode
from choreo.schemas.ids import derive_event_id
from choreo.schemas.records import FINISH
from choreo.schemas.topics import Topics
from choreo.spec.mesh import parse_mesh

TRACE = "long-1"
AGENT = "writer"
LINE_BYTES = 2048
STEPS = 1000
#: Step ranges the report gives figures for: (first, last), both included.
RANGES = ((1, 10), (10, 100), (100, 200), (200, 500), (500, 900), (900, 1000))
#: What a broker takes by default (choreo.kafka.limits), to say when a trace would fail.
BROKER_LIMIT = RecordLimit().max_bytes


def long_mesh() -> dict[str, Any]:
    """One Python agent (``write_line``) that reads the counter, appends a line and counts,
    emitting to itself; the task's initial state may set ``goal`` (steps) and ``width``
    (bytes per line)."""
    return {
        "name": "bench-long",
        "entry": ["work.next"],
        "state": {
            "log": {"reducer": "append"},
            "n": {"reducer": "add", "default": 0},
            "goal": {"reducer": "replace", "default": STEPS},
            "width": {"reducer": "replace", "default": LINE_BYTES},
        },
        "max_snapshot_bytes": 1 << 40,
        "models": {"m": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}},
        "agents": [
            {
                "name": AGENT,
                "kind": "python",
                "handler": "choreo.bench.long:write_line",
                "subscribe": ["work.next"],
                "emit": ["work.next"],
                "reads": ["n", "goal", "width"],
            }
        ],
        "budgets": {"max_hops": 1_000_000, "max_seconds": 3600},
    }


def line(index: int, width: int = LINE_BYTES) -> str:
    """The step's line of ``width`` bytes: distinct text per step, as an agent's log's."""
    text = f"step {index}: " + "the agent noted what it did and why. " * (width // 37 + 1)
    return text[:width]


async def write_line(step: Step) -> Result:
    """The workload's agent: append this step's line and count it; finish at ``goal``."""
    n = int(step.state.get("n") or 0) + 1
    writes = {"log": line(n, int(step.state.get("width") or LINE_BYTES)), "n": 1}
    if n >= int(step.state.get("goal") or STEPS):
        return step.finish(output=n, writes=writes)
    return step.emit("work.next", writes)


def step_records(
    steps: int, at: datetime, width: int = LINE_BYTES
) -> Iterator[ConsumerRecord[bytes, bytes]]:
    """The outbox records of one trace: its admission, then ``steps`` steps of a ``width``-byte
    line each, each reading the version the one before it produced; the last one finishes
    the trace."""
    records: list[Envelope] = [admission(TRACE)]
    # each step answers the event the step before it caused (the first, the entry event), as
    # an agent's does: the keeper releases the budget it held for that event
    cause = derive_event_id(records[0].event_id, TASK_SOURCE, 0)
    for index in range(1, steps + 1):
        event_id = derive_event_id(f"{TRACE}/{index}", AGENT)
        records.append(
            Envelope(
                event_id=event_id,
                causation_id=cause,
                trace_id=TRACE,
                type=FINISH if index == steps else "work.next",
                source=AGENT,
                hop=index,
                state_version=index,
                delta={"log": line(index, width), "n": 1},
                created_at=at + timedelta(milliseconds=index),
            )
        )
        cause = event_id
    for offset, envelope in enumerate(records):
        yield ConsumerRecord(
            topic="bench-long.outbox",
            partition=0,
            offset=offset,
            timestamp=int((at + timedelta(milliseconds=offset)).timestamp() * 1000),
            timestamp_type=0,
            key=TRACE.encode(),
            value=encode(envelope),
            checksum=None,
            serialized_key_size=len(TRACE),
            serialized_value_size=0,
            headers=[],
        )


@dataclass
class LongBench:
    """Per step (index 0 is the admission): the keeper's CPU seconds and the bytes it wrote."""

    cpu: list[float] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    #: The largest single record per step, to find where the broker's limit is passed.
    largest: list[int] = field(default_factory=list)
    status: str = ""
    profile: str = ""
    #: Bytes per line.
    width: int = LINE_BYTES

    def first_over_limit(self) -> int | None:
        return next((i for i, size in enumerate(self.largest) if size > BROKER_LIMIT), None)


def run(steps: int, profile: bool = False, width: int = LINE_BYTES) -> LongBench:
    """Apply the workload's ``steps`` steps in a fresh keeper; with ``profile``, under cProfile
    (the twenty costliest functions by cumulative time are kept in the result); ``width``:
    bytes per line."""
    spec = parse_mesh(long_mesh())
    keeper = Keeper(spec, Topics("bench-long"))
    result = LongBench(width=width)
    profiler = cProfile.Profile() if profile else None
    for record in step_records(steps, datetime(2025, 1, 1, tzinfo=UTC), width):
        batch = Batch(limit=RecordLimit(), blobs=keeper.blobs)
        if profiler is not None:
            profiler.enable()
        started = time.process_time()
        reason = keeper.handle(keeper.apply, record, batch)
        batch.written_nowhere()
        values = [value or b"" for _, _, value in batch.state_records()]
        values += [data for _, _, data in batch.chunks]
        result.cpu.append(time.process_time() - started)
        if profiler is not None:
            profiler.disable()
        if reason is not None:
            raise RuntimeError(f"the keeper refused step {record.offset}: {reason}")
        keeper.settle(batch)
        values += [value for _, _, value, _ in batch.records()]
        result.written.append(sum(len(v) for v in values))
        result.largest.append(max((len(v) for v in values), default=0))
    result.status = keeper.traces[TRACE].status
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(20)
        result.profile = out.getvalue()
    return result


def report(result: LongBench, command: str) -> str:
    """The keeper's CPU and bytes per step by step range, as a Markdown section."""
    rows = []
    steps = len(result.cpu) - 1
    for first, last in RANGES:
        if first > steps:
            break
        cpu = result.cpu[first : min(last, steps) + 1]
        written = [float(b) for b in result.written[first : min(last, steps) + 1]]
        rows.append(
            f"| {first}-{min(last, steps)} | {Summary.of(cpu).p50 * 1000:.2f} ms "
            f"| {sum(cpu) / len(cpu) * 1000:.2f} ms "
            f"| {Summary.of(written).p50 / 1024:,.1f} KiB "
            f"| {sum(written) / len(written) / 1024:,.1f} KiB |"
        )
    over = result.first_over_limit()
    limit_note = (
        "no record passes the broker's 1 MiB limit"
        if over is None
        else f"from step {over} a record passes the broker's 1 MiB limit "
        "(the live mesh would fail the trace there)"
    )
    table = "\n".join(rows)
    blob_kib = DEFAULT_BLOB_BYTES // 1024
    return f"""
Command: `{command}` (in-process keeper, no broker)

Workload: one agent appends a {result.width}-byte line to an `append` field and adds 1 to a
counter, {steps} steps in one trace; the last step finishes it (status: {result.status}).
Per step: the keeper's CPU (decode, dedupe, fold, hop record, forward, state log) and the
bytes it writes (events, hop record, the state log's delta, and now and then a full
snapshot with the new chunks of the values it holds by reference: the log, once past
{blob_kib} KiB), median (p50) and mean over the range; {limit_note}.

| steps | keeper CPU per step, p50 | mean | bytes written per step, p50 | mean |
| --- | ---: | ---: | ---: | ---: |
{table}
"""
