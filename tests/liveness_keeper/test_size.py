"""Size is a limit the keeper knows: nothing it produces is over it, and every trace still ends.

Before, a record over 1 MiB raised outside the keeper's per-record handling; the keeper exited
and, restarted, failed on the same outbox record again, so every later task on the partition
was stranded. Each test here also checks the keeper is still running afterwards.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from choreo.kafka.blobs import BlobReader
from choreo.kafka.limits import broker_limit, topic_limits
from choreo.schemas import Envelope, Snapshot, Task, decode, encode
from choreo.schemas.blobs import Held, ref_of
from tests.conftest import wait_until
from tests.liveness_keeper.support import LoneKeeper

pytestmark = pytest.mark.integration

#: The embedded broker reports no ``max.message.bytes`` and takes records well over 1 MiB;
#: this is the size it is trusted with when it does not say.
UNREPORTED_BROKER_CAP = 1_150_000


@dataclass(frozen=True)
class Limits:
    """The keeper's record limit and the broker's own cap on the tasks topic, in bytes."""

    mesh: int
    broker: int


@pytest.fixture(scope="module")
def limits(lone_keeper: LoneKeeper) -> Limits:
    """Both limits as the broker reports them: the mesh's is what the keeper computes at
    start; the broker's is the tasks topic's ``max.message.bytes`` (Apache Kafka: 1 MiB plus
    framing, so the mesh's limit sits 16 KiB under it)."""
    tasks = lone_keeper.topics.tasks
    mesh = asyncio.run(broker_limit(lone_keeper.bootstrap, [tasks])).max_bytes
    reported = asyncio.run(topic_limits(lone_keeper.bootstrap, [tasks]))
    return Limits(mesh, min(reported, default=UNREPORTED_BROKER_CAP))


def submit(keeper: LoneKeeper, text: str, state: dict[str, Any] | None = None) -> str:
    trace_id = f"size-{uuid.uuid4()}"
    task = Task(input=text, trace_id=trace_id, initial_state=state)
    keeper.produce(keeper.topics.tasks, encode(task), trace_id.encode())
    return trace_id


def fields(prefix: str, count: int) -> dict[str, str]:
    """``count`` fields of 60 KB each: every one under the blob threshold (64 KiB), so each
    travels in the events as a value, not a reference."""
    return {f"{prefix}{i}": prefix * 60_000 for i in range(count)}


def entry_event(keeper: LoneKeeper, trace_id: str) -> int:
    """The size of the trace's entry event, once the keeper has sent it."""

    def sent() -> int | None:
        for record in keeper.read(keeper.topics.event("draft.requested")):
            if record.key == trace_id.encode():
                return len(record.value)
        return None

    return wait_until(sent, 90, message=f"the entry event of {trace_id}")


def one_result(keeper: LoneKeeper, trace_id: str) -> object:
    results = wait_until(
        lambda: keeper.results().get(trace_id), 90, message=f"the result of {trace_id}"
    )
    assert len(results) == 1, results
    return results[0]


def test_a_600_kb_task_is_admitted_and_its_entry_event_carries_the_input_by_reference(
    lone_keeper: LoneKeeper,
) -> None:
    text = "".join(f"{i:07d}" for i in range(100_000))[:600_000]  # no two chunks alike
    trace_id = submit(lone_keeper, text)
    size = entry_event(lone_keeper, trace_id)
    assert size < 64 * 1024  # the input is on the blob topic, the event names it
    event = next(
        decode(r.value, Envelope)
        for r in lone_keeper.read(lone_keeper.topics.event("draft.requested"))
        if r.key == trace_id.encode()
    )
    held = ref_of((event.state or {})["input"])
    assert held is not None and held.ref.size == len(text) + 2  # the JSON string, once
    assert asyncio.run(fetch(lone_keeper, held)) == text
    assert lone_keeper.running()


async def fetch(keeper: LoneKeeper, held: Held) -> object:
    reader = BlobReader(keeper.bootstrap, keeper.settings, "test-size-blobs")
    try:
        return await reader.value(held)
    finally:
        await reader.close()


def test_a_forwarded_event_over_the_limit_fails_its_trace_with_the_reason(
    lone_keeper: LoneKeeper,
) -> None:
    # What is still limited: many values, each under the blob threshold, that add up past
    # the record limit in one event (16 fields of 60 KB, and the step's 100 KB text).
    trace_id = submit(lone_keeper, "go", fields("a", 8))
    entry_event(lone_keeper, trace_id)
    step = lone_keeper.step(
        trace_id, "draft.ready", "writer", 1, delta=fields("b", 8), text="t" * 100_000
    )
    result = one_result(lone_keeper, trace_id)
    assert result.status == "failed"  # type: ignore[attr-defined]
    assert "over the record limit" in result.reason  # type: ignore[attr-defined]
    assert "draft.ready" in result.reason  # type: ignore[attr-defined]
    hop = wait_until(
        lambda: [h for h in lone_keeper.hops(trace_id) if h.event_id == step.event_id],
        60,
        message="the hop record",
    )
    assert hop[0].status == "failed"
    assert "over the record limit" in hop[0].extensions["reason"]
    snapshots = [
        decode(r.value, Snapshot)
        for r in lone_keeper.read(lone_keeper.topics.state)
        if r.key == trace_id.encode()
    ]
    final = max(snapshots, key=lambda s: s.version)
    assert final.status == "failed" and "over the record limit" in (final.reason or "")
    assert lone_keeper.running()


def test_a_task_too_large_to_admit_ends_failed_once_with_the_reason(
    lone_keeper: LoneKeeper, limits: Limits
) -> None:
    # between the two limits: the broker takes it; the mesh cannot
    trace_id = submit(lone_keeper, "y" * ((limits.mesh + limits.broker) // 2))
    result = one_result(lone_keeper, trace_id)
    assert result.status == "failed"  # type: ignore[attr-defined]
    assert "task too large to admit" in result.reason  # type: ignore[attr-defined]
    assert str(limits.mesh) in result.reason  # type: ignore[attr-defined]
    later = submit(lone_keeper, "a small task after it")
    entry_event(lone_keeper, later)
    assert lone_keeper.running()


def test_the_dead_letter_of_a_790_kb_invalid_task_is_cut_to_fit(
    lone_keeper: LoneKeeper, limits: Limits
) -> None:
    marker = f"invalid-{uuid.uuid4()}"
    invalid = json.dumps(
        {"inptu": marker, "padding": "\u00e9" * 395_000}, ensure_ascii=False
    ).encode()  # 2 bytes a character: ~790 KB
    assert len(invalid) > 790_000
    lone_keeper.produce(lone_keeper.topics.tasks, invalid, marker.encode())
    letters = wait_until(
        lambda: [d for d in lone_keeper.dead_letters() if d.key == marker],
        90,
        message="the dead letter",
    )
    assert len(letters) == 1
    letter = letters[0]
    assert "input" in letter.reason and "original cut" in letter.reason
    assert invalid.startswith(letter.original) and len(letter.original) < len(invalid)
    assert len(encode(letter)) <= limits.mesh
    later = submit(lone_keeper, "a small task after it")
    entry_event(lone_keeper, later)
    assert lone_keeper.running()
