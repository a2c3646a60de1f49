"""The real-model tests run where the local-model extra is installed, on the embedded broker.

Once per CI run (.ci/run installs the extra for them; docs/TESTING.md): what they test is how
the mesh copes with a real model's answers, which no broker changes, so the Apache Kafka pass
skips them rather than spend minutes of model time again.
"""

from __future__ import annotations

import importlib.util

import pytest

from choreo.kafka.broker import BrokerHandle, broker_kind
from choreo.spec.localmodel import INSTALL_HINT
from tests.real_model.support import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How each real-model test's traces ended, after the run (docs/MODELS.md)."""
    for outcome in ("passed", "failed"):
        for report in terminalreporter.getreports(outcome):
            for name, value in report.user_properties:
                if name == TALLY:
                    terminalreporter.write_line(f"\n{value}")


@pytest.fixture(scope="module")
def real_model_broker(broker: BrokerHandle) -> BrokerHandle:
    """The session's broker, when the extra is installed and it is the embedded broker."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip(f"needs the local-model extra: {INSTALL_HINT}")
    if broker_kind(broker.bootstrap) != "embedded":
        pytest.skip(
            "run once, on the embedded broker: the model's answers are under test, not the broker"
        )
    return broker
