"""Shared state on a real broker: concurrent writers, the research fan-out/fan-in example. (The
state commands of the CLI on the same writers: tests/processes/test_cli_state.py.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from choreo.schemas import StateConflict
from tests.conftest import EXAMPLES, RunningMesh
from tests.state.writers import WRITERS, finished, writers

pytestmark = pytest.mark.integration

__all__ = ["finished", "writers"]  # the fixtures, shared with the CLI's tests of this mesh


@pytest.fixture(scope="module")
def research(start_mesh: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh(EXAMPLES / "research" / "mesh.yaml") as mesh:
        yield mesh


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
