"""The state commands of the ``choreo`` command, a process of its own, on a mesh of three
writers racing on each trace: the conflicts in ``trace``, ``state --diff``, and ``replay``
finding every trace identical, then naming a forged field."""

from __future__ import annotations

import subprocess

import msgspec
import pytest
from kafka import KafkaProducer

from choreo.schemas import encode
from tests.commands import CHOREO
from tests.conftest import RunningMesh
from tests.state.writers import finished, writers

pytestmark = pytest.mark.integration

__all__ = ["finished", "writers"]  # the fixtures, shared with tests/state/test_state_mesh.py


def choreo(mesh: RunningMesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHOREO, *args],
        env={**mesh.env(), "COLUMNS": "220"},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_trace_shows_the_conflicts_and_state_diff_shows_each_change(
    writers: RunningMesh, finished: list[str]
) -> None:
    trace_id = finished[0]
    tree = choreo(writers, "trace", trace_id)
    assert tree.returncode == 0, tree.stderr
    assert "4 state conflicts" in tree.stdout
    assert "first_writer_wins" in tree.stdout and "last_writer_wins" in tree.stdout

    diff = choreo(writers, "state", trace_id, "--diff", "1", "4", "--mesh", str(writers.path))
    assert diff.returncode == 0, diff.stderr
    assert "version 1 → 4" in diff.stdout
    # not a terminal: one tab-separated line per changed field
    rows = {line.split("\t")[0]: line for line in diff.stdout.splitlines() if line.count("\t") >= 4}
    assert {"log", "count", "tags", "last", "first", "join.all"} <= rows.keys()
    assert "changed" in rows["count"] and "added" in rows["log"]
    assert "input" not in rows  # unchanged fields are not listed

    bad = choreo(writers, "state", trace_id, "--diff", "1", "99", "--mesh", str(writers.path))
    assert bad.returncode == 2 and "versions 1..5, not 99" in bad.stderr


def test_replay_finds_every_trace_identical_then_names_a_forged_field(
    writers: RunningMesh, finished: list[str]
) -> None:
    clean = choreo(writers, "replay", "--mesh", str(writers.path))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 differ" in clean.stdout
    assert all(t in clean.stdout for t in finished)

    forged = writers.snapshot(finished[1])
    forged = msgspec.structs.replace(forged, fields={**forged.fields, "count": 4})
    producer = KafkaProducer(bootstrap_servers=writers.bootstrap, acks="all")
    producer.send(writers.topics.state, key=forged.trace_id.encode(), value=encode(forged)).get(
        timeout=30
    )
    producer.close()
    dirty = choreo(writers, "replay", "--mesh", str(writers.path))
    assert dirty.returncode == 1
    assert "1 differ" in dirty.stdout and "fields.count" in dirty.stdout
