"""Replies that used to strand their trace, through the real broker and a scripted model server
that breaks its answers over real HTTP: every trace ends. (A step that raises, then its agent
killed: tests/processes/test_crashed_step.py.)"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from choreo.schemas import Budget
from tests.conftest import RunningMesh
from tests.liveness.support import one_agent_mesh

pytestmark = pytest.mark.integration

LIMIT = 256 * 1024  # the default max_reply_bytes


@pytest.fixture(scope="module")
def mesh(
    start_mesh: Callable[..., RunningMesh], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningMesh]:
    folder = tmp_path_factory.mktemp("liveness")
    with start_mesh(one_agent_mesh(folder), base_dir=folder) as running:
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
    assert result.status == "halted" and result.reason.startswith("budget.wall_clock")
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
    assert mesh.failed() == []  # no service ended
