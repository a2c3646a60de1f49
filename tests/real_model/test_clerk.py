"""On a real model (SmolLM2-135M-Instruct served by llama.cpp), whatever it says, every trace
of a tool-calling agent (clerk.yaml) ends exactly once, with a reason, its usage what the
server reported, within its budgets.

Twenty tasks, with the watchdog running. What the model answers varies with the machine's
timing and the model's sampling, so nothing here asserts how many traces complete: the test
asserts the promise for every trace and prints how they ended (counts by status and reason;
docs/MODELS.md publishes them). The two real-model test modules run side by side (each mesh
has a model server of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from choreo.kafka.broker import BrokerHandle
from choreo.testing import SyncMesh
from tests.real_model.support import QUESTIONS, assert_the_promise, report, run

pytestmark = [pytest.mark.real_model, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def clerk(real_model_broker: BrokerHandle) -> Iterator[SyncMesh]:
    with SyncMesh(
        Path(__file__).with_name("clerk.yaml"), real_model_broker.bootstrap, watchdog=True
    ) as mesh:
        yield mesh


def test_every_trace_of_a_tool_calling_agent_ends_once_within_its_budgets(
    clerk: SyncMesh, record_property: Callable[[str, object], None]
) -> None:
    ended = run(clerk, QUESTIONS)
    report(record_property, "tool-calling agent (tests/real_model/clerk.yaml)", ended)
    assert_the_promise(clerk.spec, ended)
