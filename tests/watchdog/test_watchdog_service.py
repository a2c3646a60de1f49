"""The watchdog as a real process on a real broker: loops and overruns are stopped, a healthy
trace is left alone, and a record it cannot read goes to the dead-letter topic."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import make_producer, partition_for, read_topic
from choreo.kafka.topics import ensure_topics
from choreo.observe.settings import Settings
from choreo.schemas import (
    Budget,
    ControlVerdict,
    DeadLetter,
    Escalation,
    HopRecord,
    Snapshot,
    StateDelta,
    decode,
    encode,
)
from choreo.schemas.deltas import delta_key
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh
from choreo.spec.watchdog import app_id
from tests.watchdog.support import hop

pytestmark = pytest.mark.integration

MESH = """\
name: watchdog-test
entry: [draft.requested]
models:
  offline: {base_url: "http://127.0.0.1:9/v1", model: offline}
agents:
  - name: writer
    subscribe: [draft.requested]
    persona: Write a draft.
    model: offline
    routes: [{emit: draft.ready}]
  - name: editor
    subscribe: [draft.ready]
    persona: Review the draft.
    model: offline
    routes: [{when: APPROVED, finish: true}, {emit: draft.requested}]
budgets: {max_hops: 25, max_seconds: 3600}
"""
# Its own prefix (and so its own group) on the session's broker.
PREFIX = f"wd{os.getpid()}"
TOPICS = Topics(PREFIX)
SETTINGS = Settings(KAFKA_BOOTSTRAP_SERVERS=None, topic_prefix=PREFIX)
GROUP = app_id(PREFIX)
DEADLINE_S = 240.0


@dataclass
class Running:
    bootstrap: str
    spec: MeshSpec
    log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def watchdog(broker: BrokerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("watchdog")
    mesh = tmp / "mesh.yaml"
    mesh.write_text(MESH)
    spec = load_mesh(mesh)
    asyncio.run(ensure_topics(broker.bootstrap, TOPICS, spec))
    log = tmp / "watchdog.log"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "CHOREO_TOPIC_PREFIX": PREFIX}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "choreo.watchdog", "--mesh", str(mesh)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Running(broker.bootstrap, spec, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()[-4000:]


def looping(trace: str) -> list[HopRecord]:
    """Writer and editor hand the same draft back and forth: same inputs, same states."""
    return [
        hop(
            n,
            "writer" if n % 2 else "editor",
            trace=trace,
            state=f"s{n % 2}",
            fingerprint=f"f{n % 2}",
            output=f"attempt {n}",
        )
        for n in range(1, 10)
    ]


def healthy(trace: str) -> list[HopRecord]:
    topics = ["partitions", "replication", "consumer groups", "offsets", "retention"]
    records = []
    for i, topic in enumerate(topics):
        records.append(
            hop(
                2 * i + 1,
                "writer",
                trace=trace,
                state=f"w{i}",
                fingerprint=f"fw{i}",
                output=f"Draft {i}: a paragraph that now also explains {topic}.",
            )
        )
        records.append(
            hop(
                2 * i + 2,
                "editor",
                trace=trace,
                state=f"e{i}",
                fingerprint=f"fe{i}",
                output=f"Review {i}: good, but say more about {topic}.",
            )
        )
    return records


def overspending(trace: str) -> list[HopRecord]:
    return [
        hop(
            n,
            "writer",
            trace=trace,
            state=f"s{n}",
            fingerprint=f"f{n}",
            output=f"version {n} " * n,
            tokens=100,
        )
        for n in range(1, 6)
    ]


async def produce(bootstrap: str) -> dict[int, int]:
    """Publish the three traces (and a duplicate and a bad record); return, per partition of
    the hops topic, the offset after the healthy trace's last record."""
    producer = make_producer(bootstrap, "watchdog-test")
    await producer.start()
    try:
        snapshot = Snapshot(trace_id="spend", version=0, budget=Budget(max_tokens=500))
        await producer.send_and_wait(TOPICS.state, encode(snapshot), key=b"spend")
        # the state log's delta after it, on the trace's partition, and its tombstone: the
        # watchdog reads the delta's head and skips the tombstone, dead-lettering neither
        delta = StateDelta(
            trace_id="spend", base_version=0, version=1, budget=Budget(max_tokens=500)
        )
        part = partition_for("spend", len(await producer.partitions_for(TOPICS.state)))
        for value in (encode(delta), None):
            await producer.send_and_wait(
                TOPICS.state, value, key=delta_key("spend", 1).encode(), partition=part
            )
        healthy_ends: dict[int, int] = {}
        loop = looping("loop")
        records = [*loop[:3], loop[2], *loop[3:], *healthy("ok"), *overspending("spend")]
        for record in records:
            meta = await producer.send_and_wait(
                TOPICS.hops, encode(record), key=record.trace_id.encode()
            )
            if record.trace_id == "ok":
                healthy_ends[meta.partition] = meta.offset + 1
        await producer.send_and_wait(TOPICS.hops, b"not json", key=b"junk")
        return healthy_ends
    finally:
        await producer.stop()


async def committed(bootstrap: str, partitions: list[int]) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(
            GROUP, partitions=[TopicPartition(TOPICS.hops, p) for p in partitions]
        )
        return {tp.partition: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def outputs(
    bootstrap: str,
) -> tuple[list[ControlVerdict], list[Escalation], list[DeadLetter]]:
    verdicts = [
        decode(r.value or b"", ControlVerdict)
        for r in await read_topic(bootstrap, SETTINGS, TOPICS.control)
    ]
    escalations = [
        decode(r.value or b"", Escalation)
        for r in await read_topic(bootstrap, SETTINGS, TOPICS.escalations)
    ]
    letters = [
        decode(r.value or b"", DeadLetter)
        for r in await read_topic(bootstrap, SETTINGS, TOPICS.dlq)
    ]
    return verdicts, escalations, letters


@pytest.mark.timeout(DEADLINE_S + 60)
def test_loops_and_overruns_are_stopped_and_healthy_traces_left_alone(
    watchdog: Running,
) -> None:
    healthy_ends = asyncio.run(produce(watchdog.bootstrap))
    deadline = time.monotonic() + DEADLINE_S
    while True:
        verdicts, escalations, letters = asyncio.run(outputs(watchdog.bootstrap))
        done = asyncio.run(committed(watchdog.bootstrap, sorted(healthy_ends)))
        seen = {(v.trace_id, v.action) for v in verdicts}
        caught_up = all(done.get(p, -1) >= end for p, end in healthy_ends.items())
        if {("loop", "persona_shift"), ("spend", "halt")} <= seen and letters and caught_up:
            break
        assert watchdog.process.poll() is None, watchdog.log.read_text()[-4000:]
        assert time.monotonic() < deadline, (
            f"after {DEADLINE_S:.0f}s: verdicts={[(v.trace_id, v.action) for v in verdicts]} "
            f"escalations={len(escalations)} dlq={len(letters)} committed={done} "
            f"want={healthy_ends}\n{watchdog.log.read_text()[-3000:]}"
        )
        time.sleep(1.0)

    # No keeper applies the shifts here, so no step ever runs with them: the loop's evidence
    # after its shifts cannot halt it (tests/scenarios covers the halt with a keeper).
    by_trace = sorted((v.trace_id, v.action, v.reason, v.agent) for v in verdicts)
    assert by_trace == [
        ("loop", "persona_shift", "loop.cycle", "editor"),
        ("loop", "persona_shift", "loop.cycle", "writer"),
        ("spend", "halt", "budget.tokens", None),
    ]
    shift = next(v for v in verdicts if v.action == "persona_shift")
    assert shift.temperature is not None and shift.system_prompt
    assert escalations == []  # the keeper writes a halted trace's one escalation
    spend = next(v for v in verdicts if v.trace_id == "spend")
    assert spend.evidence["details"]["tokens"] == {"used": 600, "limit": 500}
    assert [(d.topic, d.key) for d in letters] == [(TOPICS.hops, "junk")]
