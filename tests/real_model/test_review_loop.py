"""On a real model (SmolLM2-135M-Instruct served by llama.cpp), whatever it says, every trace
of the writer/editor review loop (examples/writer-editor/local-model.yaml) ends exactly once,
with a reason, its usage what the server reported, within its budgets.

Twenty tasks with the watchdog running; what is asserted and printed: tests/real_model/support.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from benchmarks.real_model import BRIEFS, local_example
from choreo.kafka.broker import BrokerHandle
from choreo.testing import SyncMesh
from tests.real_model.support import assert_the_promise, report, run

pytestmark = [pytest.mark.real_model, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def review_loop(real_model_broker: BrokerHandle) -> Iterator[SyncMesh]:
    spec = local_example("writer-editor")
    with SyncMesh(spec, real_model_broker.bootstrap, watchdog=True) as mesh:
        yield mesh


def test_every_trace_of_a_review_loop_ends_once_within_its_budgets(
    review_loop: SyncMesh, record_property: Callable[[str, object], None]
) -> None:
    ended = run(review_loop, BRIEFS)
    report(record_property, "review loop (examples/writer-editor/local-model.yaml)", ended)
    assert_the_promise(review_loop.spec, ended)
    # the editor names its route as structured output: no trace fails for want of a route
    assert not [t for t in ended if "no route matched" in (t.results[0].reason or "")]
