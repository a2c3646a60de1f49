"""What the real-model tests share: how many tasks, how they are sent, what must hold for
every trace whatever the model said, and the tally they print (docs/MODELS.md).

What the model answers varies with the machine's timing and the model's sampling, so nothing
asserts how many traces complete: each test asserts the promise for every trace and reports
how they ended (counts by status and reason). The test modules run side by side, each mesh
with a model server of its own."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.real_model import Ended, run_tasks, tally
from choreo.spec.mesh import MeshSpec
from choreo.testing import SyncMesh

TASKS = 20
IN_FLIGHT = 2
#: The time all of a test's tasks share: each task's budget ends with it, so a test takes
#: about this long at most however slow the machine is (docs/TESTING.md).
WINDOW_S = 300.0
#: The clerk's questions, cycled.
QUESTIONS = (
    "What is the total of order 1042?",
    "When was order 1043 delivered?",
    "Has order 1044 been delivered yet?",
    "What did order 9999 cost?",
    "What is the total of order 1043, and when was it delivered?",
)


def run(mesh: SyncMesh, texts: tuple[str, ...]) -> list[Ended]:
    work = [texts[i % len(texts)] for i in range(TASKS)]
    return mesh.run(run_tasks(mesh.mesh, work, IN_FLIGHT, WINDOW_S + 180, WINDOW_S))


def assert_the_promise(spec: MeshSpec, ended: list[Ended]) -> None:
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


#: The test report's property holding how the traces ended (printed by conftest.py).
TALLY = "how the traces ended"


def report(record_property: Callable[[str, object], None], name: str, ended: list[Ended]) -> None:
    """Attach how the traces ended to the test's report: the run's summary prints it, from
    whichever worker process ran the test."""
    record_property(TALLY, tally(name, ended))
