"""The soak, small: SIGKILL of a random agent replica or the keeper, four times while tasks are
in flight, loses no task and ends none twice (the full run: ``python -m benchmarks.soak``,
docs/BENCHMARKS.md).

The kills follow the tasks, not the clock: each comes once the first task of a quarter of
them has ended. Killing every few seconds let a fast broker finish all 80 tasks in 14 s, with
one kill, before the faults the test is about had happened."""

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
    report = soak(
        broker.bootstrap, tmp_path, tasks=80, kill_every_s=0, timeout_s=900, seed=7, kills=4
    )
    assert sum(report.kills.values()) == 4, report
    assert report.missing == 0, report
    assert report.doubled == 0, report
    assert sum(report.statuses.values()) == 80
