"""Shared state through real processes and a real broker: concurrent writers, the research
fan-out/fan-in example, and the state commands of the CLI (trace, state --diff, replay)."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
from kafka import KafkaProducer

from choreo.schemas import StateConflict, encode
from tests.commands import CHOREO
from tests.conftest import EXAMPLES, RunningMesh

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
WRITERS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def writers(start_mesh_processes: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh_processes(HERE / "concurrent" / "mesh.yaml") as mesh:
        yield mesh


@pytest.fixture(scope="module")
def research(start_mesh_processes: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh_processes(EXAMPLES / "research" / "mesh.yaml") as mesh:
        yield mesh


@pytest.fixture(scope="module")
def finished(writers: RunningMesh) -> list[str]:
    """Four traces, each raced by the three writers, all run to their end."""
    traces = [writers.submit(f"race {i}", trace_id=f"race-{i}") for i in range(4)]
    for trace_id in traces:
        result = writers.result(trace_id)
        assert result.status == "completed", result.reason
    return traces


def choreo(mesh: RunningMesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHOREO, *args],
        env={**mesh.env(), "COLUMNS": "220"},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_three_concurrent_writers_lose_nothing_and_every_collision_is_reported(
    writers: RunningMesh, finished: list[str]
) -> None:
    for trace_id in finished:
        state = writers.snapshot(trace_id)
        fields = state.fields
        assert Counter(fields["log"]) == Counter(WRITERS)  # every append, exactly once
        assert fields["count"] == 3
        assert fields["tags"] == sorted(WRITERS)
        assert fields["join.all"] == fields["log"]  # the join met each branch once
        first_folded, last_folded = fields["log"][0], fields["log"][-1]
        assert fields["last"] == last_folded == state.writes["last"].agent
        assert fields["first"] == first_folded == state.writes["first"].agent

        found = writers.client.read(writers.topics.conflicts, trace_id, StateConflict)
        for name, policy in (("last", "last_writer_wins"), ("first", "first_writer_wins")):
            on_field = sorted((c for c in found if c.field == name), key=lambda c: c.version)
            assert len(on_field) == 2, on_field  # three writers from one base: two collisions
            for conflict, loser in zip(on_field, fields["log"][1:], strict=True):
                assert conflict.policy == policy and conflict.base_version == 1
                assert {conflict.kept.agent, conflict.other.agent} <= set(WRITERS)
                assert conflict.kept.agent != conflict.other.agent
                if policy == "first_writer_wins":
                    assert (conflict.kept.agent, conflict.other.agent) == (first_folded, loser)
                else:
                    assert conflict.kept.agent == loser == conflict.kept_value
        hops = writers.hops(trace_id)
        assert sum(h.conflicts for h in hops) == len(found) == 4


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


def test_the_research_example_meets_three_parallel_branches_in_one_synthesis(
    research: RunningMesh,
) -> None:
    trace_id = research.submit("Should we move our batch jobs to event streams?")
    result = research.result(trace_id)
    assert result.status == "completed", result.reason
    assert result.output.startswith("BRIEF: Move the jobs whose results people wait for")
    assert result.usage.hops == 4  # three researchers, one synthesizer
    fields = research.snapshot(trace_id).fields
    authors = Counter(entry.split(":")[0] for entry in fields["findings"])
    assert authors == {"historian": 1, "engineer": 1, "economist": 1}
    assert fields["sources"] == 3
    assert fields["angles"] == ["economics", "engineering", "history"]
    assert fields["summary"] == result.output
    assert "notes" not in fields  # scratch, dropped when the trace finished


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
