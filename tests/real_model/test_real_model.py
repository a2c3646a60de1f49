"""On a real model (SmolLM2-135M-Instruct served by llama.cpp), whatever it says, every trace
ends exactly once, with a reason, its usage what the server reported, within its budgets.

Twenty tasks each for a tool-calling agent (clerk.yaml) and the writer/editor review loop
(examples/writer-editor/local-model.yaml), with the watchdog running. What the model answers
varies with the machine's timing and the model's sampling, so nothing here asserts how many
traces complete: each test asserts the promise for every trace and prints how they ended
(counts by status and reason; docs/MODELS.md publishes them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.real_model import BRIEFS, Ended, local_example, run_tasks, tally
from choreo.kafka.broker import BrokerHandle
from choreo.spec.mesh import MeshSpec
from choreo.testing import SyncMesh

pytestmark = [pytest.mark.real_model, pytest.mark.timeout(1800)]

TASKS = 20
IN_FLIGHT = 2
#: The time all of a test's tasks share: each task's budget ends with it, so a test takes
#: about this long at most however slow the machine is (docs/TESTING.md).
WINDOW_S = 300.0
QUESTIONS = (
    "What is the total of order 1042?",
    "When was order 1043 delivered?",
    "Has order 1044 been delivered yet?",
    "What did order 9999 cost?",
    "What is the total of order 1043, and when was it delivered?",
)


@pytest.fixture(scope="module")
def clerk(real_model_broker: BrokerHandle) -> Iterator[SyncMesh]:
    with SyncMesh(
        Path(__file__).with_name("clerk.yaml"), real_model_broker.bootstrap, watchdog=True
    ) as mesh:
        yield mesh


@pytest.fixture(scope="module")
def review_loop(real_model_broker: BrokerHandle) -> Iterator[SyncMesh]:
    spec = local_example("writer-editor")
    with SyncMesh(spec, real_model_broker.bootstrap, watchdog=True) as mesh:
        yield mesh


def _run(mesh: SyncMesh, texts: tuple[str, ...]) -> list[Ended]:
    work = [texts[i % len(texts)] for i in range(TASKS)]
    return mesh.run(run_tasks(mesh.mesh, work, IN_FLIGHT, WINDOW_S + 180, WINDOW_S))


def _assert_the_promise(spec: MeshSpec, ended: list[Ended]) -> None:
    assert len(ended) == TASKS
    for trace in ended:
        assert len(trace.results) == 1, f"{trace.trace_id}: {len(trace.results)} terminal records"
        result = trace.results[0]
        if result.status != "completed":
            assert result.reason, f"{trace.trace_id} ended {result.status} with no reason"
        # a step that was answered counts the server's own tokens, never the client's
        # estimate (a call cut off by the deadline was answered nothing, and counts none)
        answered = [hop for hop in trace.hops if hop.usage.calls and hop.status == "ok"]
        assert all(not hop.usage.estimated and hop.usage.tokens_in > 0 for hop in answered)
        assert result.usage.tokens_in == sum(hop.usage.tokens_in for hop in trace.hops)
        assert result.usage.tokens_out == sum(hop.usage.tokens_out for hop in trace.hops)
        # budgets: hops never pass their limit; tokens may (a server that counts a prompt
        # above the client's estimate), but then the trace is halted, never completed
        budgets = spec.budgets
        if budgets.max_hops is not None:
            assert result.usage.hops <= budgets.max_hops
        spent = result.usage.tokens_in + result.usage.tokens_out
        if budgets.max_tokens is not None and spent > budgets.max_tokens:
            assert result.status == "halted", f"{trace.trace_id}: {spent} tokens, {result.status}"


def _report(capsys: pytest.CaptureFixture[str], name: str, ended: list[Ended]) -> None:
    with capsys.disabled():
        print(f"\n{tally(name, ended)}")


def test_every_trace_of_a_tool_calling_agent_ends_once_within_its_budgets(
    clerk: SyncMesh, capsys: pytest.CaptureFixture[str]
) -> None:
    ended = _run(clerk, QUESTIONS)
    _report(capsys, "tool-calling agent (tests/real_model/clerk.yaml)", ended)
    _assert_the_promise(clerk.spec, ended)


def test_every_trace_of_a_review_loop_ends_once_within_its_budgets(
    review_loop: SyncMesh, capsys: pytest.CaptureFixture[str]
) -> None:
    ended = _run(review_loop, BRIEFS)
    _report(capsys, "review loop (examples/writer-editor/local-model.yaml)", ended)
    _assert_the_promise(review_loop.spec, ended)
    # the editor names its route as structured output: no trace fails for want of a route
    assert not [t for t in ended if "no route matched" in (t.results[0].reason or "")]
