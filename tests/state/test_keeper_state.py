"""The keeper's state rules one at a time: conflicts and their policies, joins, size limits,
scratch fields, user reducers, and the replay comparison."""

from __future__ import annotations

import msgspec
import pytest

from choreo.keeper.replay import compare
from choreo.schemas import Envelope, decode
from choreo.schemas.records import FINISH
from choreo.spec.mesh import SpecError
from tests.state.support import (
    AGENTS,
    TOPICS,
    Outbox,
    conflicts,
    mesh,
    results,
    run,
    sent,
    step,
)

SPEC = mesh()


def fan_out(delta_of: dict[str, dict[str, object]], trace: str = "t") -> Outbox:
    """Every agent answers the entry event, all having read version 1."""
    log = Outbox()
    log.admit(SPEC, trace)
    for agent, delta in delta_of.items():
        log.write(step(trace, agent, 0, 1, delta))
    return log


def test_first_writer_wins_keeps_the_first_value_and_reports_each_later_writer() -> None:
    keeper, batch = run(SPEC, fan_out({a: {"fww": a} for a in AGENTS}).records)
    assert keeper.traces["t"].fields["fww"] == "alpha"
    found = conflicts(batch)
    assert [(c.kept.agent, c.kept_value, c.other.agent, c.other_value) for c in found] == [
        ("alpha", "alpha", "beta", "beta"),
        ("alpha", "alpha", "gamma", "gamma"),
    ]
    assert all(c.base_version == 1 and c.policy == "first_writer_wins" for c in found)


def test_reject_refuses_the_whole_step_and_fails_the_trace_with_the_field_named() -> None:
    log = fan_out({"alpha": {"strict": 1}, "beta": {"strict": 2, "log": "b", "n": 5}})
    keeper, batch = run(SPEC, log.records)
    snapshot = keeper.traces["t"]
    assert snapshot.status == "failed"
    assert snapshot.fields["strict"] == 1
    assert "log" not in snapshot.fields and snapshot.fields["n"] == 0  # atomic: nothing applied
    (result,) = results(batch)
    assert result.reason == "conflicting write rejected on strict"
    (conflict,) = conflicts(batch)
    assert (conflict.kept.agent, conflict.other.agent, conflict.other_value) == ("alpha", "beta", 2)


def test_one_agent_racing_itself_is_a_conflict_too() -> None:
    log = Outbox()
    log.admit(SPEC, "t")
    log.write(step("t", "alpha", 0, 1, {"lww": "first"}))
    log.write(step("t", "alpha", 1, 1, {"lww": "second"}))  # a second event, same base
    keeper, batch = run(SPEC, log.records)
    assert keeper.traces["t"].fields["lww"] == "second"
    assert len(conflicts(batch)) == 1


def test_a_write_that_saw_the_last_one_is_no_conflict() -> None:
    log = Outbox()
    log.admit(SPEC, "t")
    log.write(step("t", "alpha", 0, 1, {"lww": "a"}))
    log.write(step("t", "beta", 0, 2, {"lww": "b"}))
    keeper, batch = run(SPEC, log.records)
    assert keeper.traces["t"].writes["lww"].agent == "beta"
    assert conflicts(batch) == []


def test_the_join_emits_once_on_its_count_with_the_state_all_branches_built() -> None:
    log = fan_out({a: {"log": a} for a in AGENTS})
    log.write(step("t", "alpha", 1, 4, {"log": "late"}))  # a fourth arrival: no second emit
    keeper, batch = run(SPEC, log.records)
    (raw,) = sent(batch, TOPICS.event("wrap.requested"))
    joined = decode(raw, Envelope)
    assert joined.state_version == 4
    assert joined.state is not None and joined.state["log"] == list(AGENTS)
    assert joined.payload == {"join": "all", "arrivals": list(AGENTS)}
    assert joined.source == "join.all"
    assert keeper.traces["t"].fields["join.all"] == [*AGENTS, "alpha"]
    assert sent(batch, TOPICS.event("work.done")) == []  # only the join consumes work.done


def test_a_snapshot_over_the_limit_fails_the_trace_instead_of_being_published() -> None:
    spec = mesh(max_snapshot_bytes=2048)
    log = Outbox()
    log.admit(spec, "t")
    log.write(step("t", "alpha", 0, 1, {"log": "x" * 4096}))
    keeper, batch = run(spec, log.records)
    snapshot = keeper.traces["t"]
    assert snapshot.status == "failed" and "log" not in snapshot.fields
    (result,) = results(batch)
    assert (
        result.reason is not None and "over the mesh's max_snapshot_bytes (2048)" in result.reason
    )
    assert len(msgspec.json.encode(snapshot)) < 2048


def test_finishing_drops_scratch_fields_and_keeps_the_rest() -> None:
    log = fan_out(
        {"alpha": {"notes": "raw", "longest": "abc"}, "beta": {"longest": "ab", "notes": "more"}}
    )
    log.write(step("t", "closer", 0, 3, {"summary": "short"}, event_type=FINISH))
    keeper, _ = run(SPEC, log.records)
    fields = keeper.traces["t"].fields
    assert "notes" not in fields
    assert fields["longest"] == "abc"  # the user reducer, by import path
    assert fields["summary"] == "short"


def test_replay_comparison_names_the_fields_that_differ() -> None:
    log = fan_out({"alpha": {"log": "a", "n": 1}}, trace="same")
    log.admit(SPEC, "changed")
    log.write(step("changed", "alpha", 0, 1, {"n": 2}))
    keeper, _ = run(SPEC, log.records)
    live = dict(keeper.traces)
    live["changed"] = msgspec.structs.replace(
        live["changed"], fields={**live["changed"].fields, "n": 3}
    )
    rows = {c.trace_id: c.differences for c in compare(SPEC, TOPICS, log.records, live)}
    assert rows == {"changed": ("fields.n",), "same": ()}


@pytest.mark.parametrize(
    ("join", "message"),
    [
        ({"wait_for": "nobody.emits"}, "no route emits 'nobody.emits'"),
        ({"emit": "nobody.listens"}, "no agent subscribes to 'nobody.listens'"),
    ],
)
def test_a_join_must_connect_to_the_mesh(join: dict[str, str], message: str) -> None:
    declared = {
        "name": "all",
        "wait_for": "work.done",
        "count": 3,
        "emit": "wrap.requested",
        **join,
    }
    with pytest.raises(SpecError, match=message):
        mesh(joins=[declared])
