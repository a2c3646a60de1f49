"""SIGKILL mid-batch on Apache Kafka: no record on any output topic is written twice, no task
is lost (the long run: ``python -m benchmarks.soak --target keeper --kills 200 ...``,
docs/ARCHITECTURE.md, "Delivery guarantees")."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from benchmarks.soak import EXAMPLE, duplicates, soak
from choreo.kafka.broker import BrokerHandle
from choreo.observe.settings import Settings
from choreo.schemas import HopRecord, encode
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh

pytestmark = pytest.mark.integration


@pytest.mark.timeout(900)
@pytest.mark.parametrize("target", ["keeper", "agent"])
def test_a_service_killed_mid_batch_writes_no_record_twice_and_loses_no_task(
    transactional: BrokerHandle, tmp_path: Path, target: str
) -> None:
    report = soak(
        transactional.bootstrap,
        tmp_path,
        tasks=80,
        kill_every_s=0,
        timeout_s=600,
        seed=13,
        kills=4,
        target=target,
        exactly_once=True,
    )
    assert sum(report.kills.values()) == 4, report
    assert all((name == "keeper") == (target == "keeper") for name in report.kills), report
    assert report.duplicates == Counter(), report
    assert report.missing == 0, report
    assert report.doubled == 0, report
    assert sum(report.statuses.values()) == report.tasks == 80, report


def test_the_check_finds_a_hop_written_twice(broker: BrokerHandle) -> None:
    """The duplicate count the soak asserts on can fail: a hop record written twice is one
    duplicate on the hops topic, and nothing elsewhere."""
    prefix = f"dup{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix)
    hop = HopRecord(
        trace_id="t-1",
        event_id="e-1",
        agent="writer",
        hop=1,
        type="draft.ready",
        status="ok",
        state_version=2,
        state_hash="h",
        input_fingerprint="f",
    )
    other = HopRecord(
        trace_id="t-1",
        event_id="e-2",
        agent="editor",
        hop=2,
        type="review.ready",
        status="ok",
        state_version=3,
        state_hash="h",
        input_fingerprint="f",
    )

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            for record in (hop, other, hop):
                await producer.send_and_wait(topics.hops, encode(record), key=b"t-1")
        finally:
            await producer.stop()

    asyncio.run(write())
    found = duplicates(
        broker.bootstrap, Settings(topic_prefix=prefix), load_mesh(EXAMPLE / "mesh.yaml")
    )
    assert found == Counter({topics.hops: 1})
