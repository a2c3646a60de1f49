"""README's first command ends in ``choreo demo``: it must print the result and the trace."""

from __future__ import annotations

import os
import subprocess

import pytest

from choreo.kafka.broker import BrokerHandle
from tests.commands import CHOREO

pytestmark = pytest.mark.integration


def test_demo_prints_the_approved_draft_and_its_trace_tree(broker: BrokerHandle, tmp_path) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CHOREO_TOPIC_PREFIX": "demo",
        "COLUMNS": "120",
    }
    out = subprocess.run(
        [*CHOREO, "demo", "--log-dir", str(tmp_path / "logs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "status  completed" in out.stdout
    assert "[draft 3]" in out.stdout  # the approved, twice-revised draft is the result
    steps = [line for line in out.stdout.splitlines() if "  hop " in line]
    assert len(steps) == 6
    assert "scripted" in out.stdout.lower()
