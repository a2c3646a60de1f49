"""The soak, small: SIGKILL of a random agent replica or the keeper every few seconds loses no
task and ends none twice (the full run: ``python -m benchmarks.soak``, docs/BENCHMARKS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import soak
from choreo.kafka.broker import BrokerHandle

pytestmark = pytest.mark.integration


@pytest.mark.timeout(1200)
def test_no_task_is_lost_or_ended_twice_while_services_are_killed(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    report = soak(broker.bootstrap, tmp_path, tasks=80, kill_every_s=3.0, timeout_s=900, seed=7)
    assert sum(report.kills.values()) >= 3, report  # the run did not end before the faults
    assert report.missing == 0, report
    assert report.doubled == 0, report
    assert sum(report.statuses.values()) == 80
