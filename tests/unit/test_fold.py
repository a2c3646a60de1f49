"""Admission and folding of one trace, by example (properties live with the state tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from choreo.keeper.fold import TASK_SOURCE, admit, fold
from choreo.schemas import Budget, Envelope, FieldWrite, Task, Usage
from choreo.spec.mesh import MeshSpec, load_mesh, parse_mesh
from tests.unit.support import WRITER_EDITOR, minimal_mesh

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _spec() -> MeshSpec:
    return load_mesh(WRITER_EDITOR)


def test_admit_starts_at_version_one_with_defaults_initial_state_and_input() -> None:
    task = Task(
        input="a piece on Kafka",
        initial_state={"review": "be brief", "revisions": 5},
        metadata={"user": "ada"},
    )
    snapshot = admit(_spec(), task, "t1", "choreo.tasks/0/3", AT)
    assert snapshot.version == 1
    assert snapshot.status == "running"
    assert snapshot.fields == {
        "revisions": 5,
        "review": "be brief",
        "input": "a piece on Kafka",
        "metadata": {"user": "ada"},
    }
    assert snapshot.writes == {
        name: FieldWrite(version=1, agent=TASK_SOURCE) for name in snapshot.fields
    }
    assert (snapshot.trace_id, snapshot.origin, snapshot.admitted_at) == (
        "t1",
        "choreo.tasks/0/3",
        AT,
    )


def test_admit_applies_declared_defaults() -> None:
    snapshot = admit(_spec(), Task(input="x"), "t1", "o", AT)
    assert snapshot.fields == {"revisions": 0, "input": "x"}


def test_mesh_budget_applies_when_the_task_names_none() -> None:
    budget = admit(_spec(), Task(input="x"), "t1", "o", AT).budget
    assert budget == Budget(max_hops=12, max_seconds=300.0, deadline=AT + timedelta(seconds=300))


def test_task_budget_overrides_merge_with_the_mesh_budget() -> None:
    task = Task(input="x", budget=Budget(max_hops=3, max_cost=0.25))
    budget = admit(_spec(), task, "t1", "o", AT).budget
    assert budget == Budget(
        max_hops=3, max_cost=0.25, max_seconds=300.0, deadline=AT + timedelta(seconds=300)
    )


def test_deadline_follows_an_overridden_max_seconds() -> None:
    task = Task(input="x", budget=Budget(max_seconds=10))
    assert admit(_spec(), task, "t1", "o", AT).budget.deadline == AT + timedelta(seconds=10)


def test_no_deadline_without_max_seconds() -> None:
    mesh = minimal_mesh()
    mesh["budgets"] = {"max_seconds": None}
    budget = admit(parse_mesh(mesh), Task(input="x"), "t1", "o", AT).budget
    assert budget.max_seconds is None and budget.deadline is None


def test_fold_applies_reducers_and_records_authorship() -> None:
    spec = _spec()
    base = admit(spec, Task(input="x"), "t1", "o", AT)
    base = msgspec.structs.replace(base, fields={**base.fields, "history": ["task: admitted"]})
    step = Envelope(
        event_id="e1",
        trace_id="t1",
        type="draft.ready",
        source="writer",
        hop=1,
        state_version=1,
        usage=Usage(tokens_in=10, tokens_out=20, cost=0.01),
        delta={"draft": "v1", "revisions": 2, "history": "writer: draft"},
    )
    later = AT + timedelta(seconds=2)

    folded = fold(spec, base, step, later)

    new = folded.snapshot
    assert new.version == 2
    assert new.fields == {
        "input": "x",
        "draft": "v1",
        "revisions": 2,
        "history": ["task: admitted", "writer: draft"],
    }
    assert {k: new.writes[k] for k in ("draft", "revisions", "history")} == {
        k: FieldWrite(version=2, agent="writer") for k in ("draft", "revisions", "history")
    }
    assert new.writes["input"] == FieldWrite(version=1, agent=TASK_SOURCE)
    assert new.applied == [*base.applied, "e1"]
    assert (new.totals.tokens_in, new.totals.tokens_out, new.totals.hops) == (10, 20, 1)
    assert new.updated_at == later
    assert folded.conflicts == []
    assert base.version == 1 and "draft" not in base.fields  # the input is left untouched


def test_fold_adds_to_a_counter_across_steps() -> None:
    spec = _spec()
    snapshot = admit(spec, Task(input="x"), "t1", "o", AT)
    for n in (1, 2, 3):
        step = Envelope(
            event_id=f"e{n}",
            trace_id="t1",
            type="revision.requested",
            source="editor",
            hop=n,
            state_version=snapshot.version,
            delta={"revisions": 1},
        )
        snapshot = fold(spec, snapshot, step, AT).snapshot
    assert snapshot.fields["revisions"] == 3
    assert snapshot.version == 4
