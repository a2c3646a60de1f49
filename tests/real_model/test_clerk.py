"""On a real model (SmolLM2-135M-Instruct served by llama.cpp), whatever it says, every trace
of a tool-calling agent (clerk.yaml) ends exactly once, with a reason, its usage what the
server reported, within its budgets.

Twenty tasks with the watchdog running; what is asserted and printed: tests/real_model/support.py.
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
