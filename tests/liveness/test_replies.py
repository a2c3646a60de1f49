"""Replies that used to strand their trace, through real processes, the real broker and a
scripted model server that breaks its answers over real HTTP: every trace ends."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from choreo.kafka.clients import read_topic
from choreo.schemas import Budget
from tests.conftest import RunningMesh, wait_until
from tests.liveness.support import model_url, one_agent_mesh
from tests.tiers.support import server_stats

pytestmark = pytest.mark.integration

LIMIT = 256 * 1024  # the default max_reply_bytes


@pytest.fixture(scope="module")
def mesh(
    start_mesh_processes: Callable[..., RunningMesh], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningMesh]:
    folder = tmp_path_factory.mktemp("liveness")
    with start_mesh_processes(one_agent_mesh(folder), base_dir=folder) as running:
        yield running


def test_a_huge_reply_is_cut_to_the_declared_limit_and_the_trace_completes(
    mesh: RunningMesh,
) -> None:
    trace_id = mesh.submit("huge please", trace_id="huge-1")
    result = mesh.result(trace_id)
    assert result.status == "completed", result.reason
    assert result.output.startswith("0123456789")
    assert result.output.endswith(f"[cut: the reply was 600000 bytes, {LIMIT} kept]")
    assert len(result.output.encode()) < LIMIT + 100
    (step,) = mesh.steps(trace_id, "solo")
    assert step.payload["cut"] == {"reply_bytes": 600_000, "kept_bytes": LIMIT}
    (hop,) = mesh.hops(trace_id)
    assert hop.status == "ok"


def test_a_lone_surrogate_in_the_task_or_the_reply_is_replaced_and_the_trace_completes(
    mesh: RunningMesh,
) -> None:
    producer = KafkaProducer(bootstrap_servers=mesh.bootstrap, acks="all")
    # Half an emoji escaped in the task itself, as a foreign client may send it.
    raw = b'{"input": "surrogate in the task \\ud83d", "trace_id": "surrogate-1"}'
    producer.send(mesh.topics.tasks, key=b"surrogate-1", value=raw).get(timeout=30)
    producer.close()
    result = mesh.result("surrogate-1")
    assert result.status == "completed", result.reason
    assert result.output == "half an emoji \ufffd"
    assert mesh.snapshot("surrogate-1").fields["input"] == "surrogate in the task \ufffd"


def test_a_body_that_cannot_be_decoded_fails_the_step_with_its_reason(mesh: RunningMesh) -> None:
    result = mesh.result(mesh.submit("gzip please", trace_id="gzip-1"))
    assert result.status == "failed"
    assert "model call failed (bad_response)" in result.reason
    assert "DecodingError" in result.reason
    assert len(mesh.results("gzip-1")) == 1


def test_a_trickling_answer_is_cut_off_by_the_tiers_total_timeout(mesh: RunningMesh) -> None:
    # ~330 bytes at one per 0.2 s would take over a minute; the tier's timeout_s is 10.
    result = mesh.result(mesh.submit("trickle please", trace_id="trickle-1"), timeout=60)
    assert result.status == "failed"
    assert "model call failed (timeout)" in result.reason


def test_a_trickling_answer_ends_by_the_traces_deadline_not_a_minute_later(
    mesh: RunningMesh,
) -> None:
    # A 1 s deadline, shorter than the tier's 10 s timeout: only the deadline stops the call.
    trace_id = mesh.submit(
        "trickle past the deadline", trace_id="trickle-deadline-1", budget=Budget(max_seconds=1)
    )
    result = mesh.result(trace_id, timeout=60)
    assert result.status == "failed"
    assert len(mesh.results(trace_id)) == 1
    (step,) = mesh.steps(trace_id, "solo")
    # The call stopped at the deadline, or (under load) the step came too late to start.
    reason = step.payload["reason"]
    assert "model call failed (deadline)" in reason or "deadline passed" in reason, reason


def test_an_answer_without_content_fails_but_its_billed_tokens_count(mesh: RunningMesh) -> None:
    result = mesh.result(mesh.submit("null please", trace_id="null-1"))
    assert result.status == "failed"
    assert "(bad_response)" in result.reason
    assert result.usage.tokens_out == 5  # "five words were billed here"
    assert result.usage.tokens_in > 0
    assert result.usage.cost == pytest.approx((result.usage.tokens_in * 1.0 + 5 * 2.0) / 1e6)


#: How a task whose input starts with the key ends (see the rules in support.py).
ENDS = {
    "whole": "completed",
    "huge": "completed",
    "surrogate": "completed",
    "wide": "failed",
    "gzip": "failed",
    "trickle": "failed",
    "null": "failed",
    "broken": "failed",
}
_fuzzed = itertools.count()


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(sorted(ENDS)), min_size=3, max_size=8))
def test_random_broken_replies_each_end_their_trace_exactly_once(
    mesh: RunningMesh, kinds: list[str]
) -> None:
    traces = {
        mesh.submit(f"{kind} fuzzed", trace_id=f"fuzzed-{next(_fuzzed)}"): kind for kind in kinds
    }
    for trace_id, kind in traces.items():
        assert mesh.result(trace_id, timeout=120).status == ENDS[kind], kind
    for trace_id in traces:
        assert len(mesh.results(trace_id)) == 1
    assert mesh.group.failed() == []  # no service process exited


def committed(mesh: RunningMesh, group: str, tp: TopicPartition) -> int:
    """The offset ``group`` has committed on ``tp`` (-1 when none)."""

    async def ask() -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=mesh.bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            return await consumer.committed(tp) or -1
        finally:
            await consumer.stop()

    return int(mesh.run(ask()))


def test_a_step_that_raises_ends_failed_and_never_pins_its_partition(mesh: RunningMesh) -> None:
    url = model_url(mesh)
    tp = TopicPartition(mesh.topics.event("task.received"), 0)
    group = f"{mesh.settings.topic_prefix}.agent.solo"
    # Cut to 256 KiB and written to four fields, this step's record is over 1 MiB: the
    # producer refuses it, so the step raises.
    crashed = mesh.submit("wide please", trace_id="wide-1")
    later = [mesh.submit(f"whole task {i}", trace_id=f"after-wide-{i}") for i in range(5)]
    result = mesh.result(crashed)
    assert result.status == "failed"
    assert "MessageSizeTooLargeError" in result.reason
    for trace_id in later:
        assert mesh.result(trace_id).status == "completed"
    # past the last record, not the record count: on Apache Kafka the keeper writes the topic
    # in transactions, and each transaction's commit marker takes an offset too
    records = mesh.run(read_topic(mesh.bootstrap, mesh.settings, tp.topic, [tp.partition]))
    end = records[-1].offset + 1
    wait_until(
        lambda: committed(mesh, group, tp) == end,
        30,
        message="the agent's commit past every record, the crashed one included",
    )
    requests = server_stats(url)["requests"]

    solo = mesh.group.find("solo-1")
    assert solo.process is not None
    os.kill(solo.process.pid, signal.SIGKILL)
    solo.process.wait()
    mesh.group.start_choreo("solo-2", ["run", "agent", "--mesh", str(mesh.path), "--agent", "solo"])
    barrier = mesh.submit("whole barrier", trace_id="after-restart")
    assert mesh.result(barrier).status == "completed"
    assert server_stats(url)["requests"] == requests + 1  # nothing finished was run again
    for trace_id in [crashed, *later]:
        assert len(mesh.results(trace_id)) == 1
