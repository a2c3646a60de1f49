"""Escalations listed, resumed and closed through the ``choreo`` command, a process of its
own, on the scenario mesh (tests/scenarios/mesh.yaml) with its watchdog."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from choreo.bench.scenarios import SCENARIOS
from choreo.schemas import Escalation, Snapshot
from tests.conftest import RunningMesh
from tests.scenarios.support import MESH, Scenarios, cli, run_scenarios

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scenarios(start_mesh: Callable[..., RunningMesh]) -> Iterator[Scenarios]:
    """The two scenarios whose traces are halted for a person: the same code, and the
    editor that never approves."""
    wanted = [s for s in SCENARIOS if s.name in ("same-code", "never-approves")]
    with start_mesh(MESH, watchdog=True) as mesh:
        yield run_scenarios(mesh, wanted)


@pytest.mark.timeout(600)  # eight CLI processes and a continuation trace, on 2 busy cores
def test_escalations_are_listed_resumed_and_closed_through_the_cli(scenarios: Scenarios) -> None:
    mesh = scenarios.mesh
    code, review = (scenarios.finished(n) for n in ("same-code", "never-approves"))
    listed = cli(mesh, "escalations")
    assert listed.returncode == 0, listed.stderr
    for seen in (code, review):
        assert seen.escalations[0].escalation_id in listed.stdout
        assert seen.trace_id in listed.stdout

    guidance = "Use the built-in sum; stop iterating by index."
    resumed = cli(
        mesh, "escalations", "resolve", code.escalations[0].escalation_id, "--resume", guidance
    )
    assert resumed.returncode == 0, resumed.stderr
    closed = cli(mesh, "escalations", "resolve", review.escalations[0].escalation_id, "--close")
    assert closed.returncode == 0, closed.stderr
    again = cli(mesh, "escalations", "resolve", review.escalations[0].escalation_id, "--close")
    assert again.returncode == 1 and "already closed" in again.stderr
    twice = cli(
        mesh, "escalations", "resolve", code.escalations[0].escalation_id, "--resume", guidance
    )
    assert twice.returncode == 1 and "already resumed" in twice.stderr

    escalations = {
        e.escalation_id: e
        for e in mesh.client.read(mesh.topics.escalations, code.trace_id, Escalation)
    }
    updated = escalations[code.escalations[0].escalation_id]
    assert (updated.status, updated.guidance) == ("resumed", guidance)
    continuation = updated.continuation_trace_id
    assert continuation is not None and continuation in resumed.stdout

    follow = scenarios.settled(continuation)
    (result,) = follow.results
    assert (result.status, result.parent_trace_id) == ("completed", code.trace_id)
    assert result.output.startswith("DONE")
    assert follow.verdicts == []  # a fresh budget and a fresh watch
    first = mesh.client.read(mesh.topics.state, continuation, Snapshot)[0]
    assert first.fields["guidance"] == guidance
    assert first.fields["attempts"] == code.hops[-1].totals.hops - 1  # the halted state

    listed = cli(mesh, "escalations")
    assert "resumed" in listed.stdout and "closed" in listed.stdout
    for seen in (code, review):  # neither leaves events flowing
        after = scenarios.settled(seen.trace_id)
        assert len(after.results) == 1 and after.hops == seen.hops
