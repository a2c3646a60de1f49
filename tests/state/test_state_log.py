"""The state log's deltas: what changed between two versions, folded back exactly by any reader."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.schemas import FieldWrite, Snapshot, StateDelta, decode, encode
from choreo.schemas.deltas import (
    StateLog,
    delta_between,
    delta_key,
    fold_deltas,
    of_trace,
    read_state,
)
from choreo.schemas.records import ExtendField, MergeField, SetField

AT = datetime(2026, 1, 1, tzinfo=UTC)

values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
names = st.sampled_from(["log", "notes", "draft", "count", "meta"])


@st.composite
def edits(draw: st.DrawFn, fields: dict[str, Any]) -> dict[str, Any]:
    """A pure fold's outcome: some fields grown at the end, merged by key, replaced or gone;
    the others the very same objects (reducers never change a value in place)."""
    new = dict(fields)
    for name in draw(st.lists(names, max_size=4)):
        current = new.get(name)
        how = draw(st.sampled_from(["extend", "merge", "replace", "drop"]))
        if how == "extend" and isinstance(current, list):
            new[name] = [*current, *draw(st.lists(values, max_size=3))]
        elif how == "merge" and isinstance(current, dict):
            new[name] = {**current, **draw(st.dictionaries(st.text(max_size=3), values))}
        elif how == "drop":
            new.pop(name, None)
        else:
            new[name] = draw(values)
    return new


def snapshot(version: int, fields: dict[str, Any], applied: list[str]) -> Snapshot:
    return Snapshot(
        trace_id="t",
        version=version,
        fields=fields,
        writes={name: FieldWrite(version=version, agent="a") for name in fields},
        applied=applied,
        admitted_at=AT,
        updated_at=AT,
    )


@st.composite
def histories(draw: st.DrawFn) -> list[Snapshot]:
    """Successive versions of one trace, each built from the one before by a pure fold."""
    fields = draw(st.dictionaries(names, values))
    versions = [snapshot(1, fields, ["admit"])]
    for n in range(draw(st.integers(1, 8))):
        prior = versions[-1]
        new = draw(edits(prior.fields))
        writes = {
            **prior.writes,
            **{
                k: FieldWrite(version=prior.version + 1, agent="a")
                for k in new
                if new.get(k) is not prior.fields.get(k)
            },
        }
        versions.append(
            Snapshot(
                trace_id="t",
                version=prior.version + 1 + draw(st.integers(0, 2)),
                fields=new,
                writes=writes,
                applied=[*prior.applied, f"step-{n}"],
                admitted_at=AT,
                updated_at=AT,
            )
        )
    return versions


def wire(delta: StateDelta) -> StateDelta:
    """The delta as a reader gets it: encoded, sent, decoded."""
    read = read_state(encode(delta))
    assert isinstance(read, StateDelta)
    return read


def as_json(snapshot: Snapshot) -> Snapshot:
    return decode(encode(snapshot), Snapshot)


@settings(max_examples=300, deadline=None)
@given(histories())
def test_folding_the_deltas_after_a_snapshot_gives_every_later_version_exactly(
    versions: list[Snapshot],
) -> None:
    deltas = [wire(delta_between(a, b)) for a, b in pairwise(versions)]
    first = as_json(versions[0])
    for n, expected in enumerate(versions[1:], start=1):
        assert fold_deltas(first, deltas[:n]) == as_json(expected)


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_a_delta_across_several_versions_equals_the_deltas_of_each(
    versions: list[Snapshot], data: st.DataObject
) -> None:
    """A batch's one delta (from the version last logged to its last) folds to the same state
    as the versions one by one."""
    cut = data.draw(st.integers(0, len(versions) - 1))
    a, b = versions[0], versions[cut]
    step_by_step = fold_deltas(
        as_json(a),
        [wire(delta_between(x, y)) for x, y in pairwise(versions[: cut + 1])],
    )
    assert fold_deltas(as_json(a), [wire(delta_between(a, b))]) == step_by_step == as_json(b)


def test_a_list_grown_at_its_end_travels_as_its_new_items_only() -> None:
    log = ["x" * 2000 for _ in range(500)]
    before = snapshot(3, {"log": log, "count": 3}, ["a", "b", "c"])
    after = snapshot(4, {"log": [*log, "new line"], "count": 4}, ["a", "b", "c", "d"])
    delta = delta_between(before, after)
    assert delta.changes == {"log": ExtendField(items=["new line"]), "count": SetField(value=4)}
    assert delta.applied == ["d"]
    assert len(encode(delta)) < 1000 < len(encode(after)) // 1000


def test_an_object_with_one_key_changed_travels_as_that_key() -> None:
    meta = {"k" + str(i): "v" * 100 for i in range(50)}
    before = snapshot(2, {"meta": meta}, [])
    after = snapshot(3, {"meta": {**meta, "k7": "w"}}, [])
    assert delta_between(before, after).changes == {"meta": MergeField(entries={"k7": "w"})}


def test_folding_never_changes_the_snapshot_or_the_deltas_it_reads() -> None:
    base = snapshot(1, {"log": ["a"]}, [])
    grown = [
        wire(
            delta_between(
                snapshot(v, {"log": ["a"] * v}, []), snapshot(v + 1, {"log": ["a"] * (v + 1)}, [])
            )
        )
        for v in range(1, 4)
    ]
    encoded = [encode(d) for d in grown]
    assert fold_deltas(base, grown).fields["log"] == ["a"] * 4
    assert base.fields == {"log": ["a"]} and [encode(d) for d in grown] == encoded


def test_the_log_reader_takes_the_newest_snapshot_and_the_deltas_after_it() -> None:
    v1 = snapshot(1, {"log": []}, ["admit"])
    v2 = snapshot(2, {"log": ["a"]}, ["admit", "s1"])
    v3 = snapshot(3, {"log": ["a", "b"]}, ["admit", "s1", "s2"])
    v4 = snapshot(4, {"log": ["a", "b", "c"]}, ["admit", "s1", "s2", "s3"])
    log = StateLog()
    log.add(b"t", encode(v1))
    log.add(delta_key("t", 2).encode(), encode(delta_between(v1, v2)))
    log.add(delta_key("t", 3).encode(), encode(delta_between(v2, v3)))
    assert log.latest() == {"t": as_json(v3)}
    log.add(b"t", encode(v3))  # a new full snapshot, then the tombstones of what it replaces
    log.add(delta_key("t", 2).encode(), None)
    log.add(delta_key("t", 3).encode(), None)
    log.add(delta_key("t", 4).encode(), encode(delta_between(v3, v4)))
    assert log.state("t") == as_json(v4)
    assert log.tails["t"].live_keys == {delta_key("t", 4)}


def test_the_log_reader_skips_what_is_neither_a_snapshot_nor_a_delta() -> None:
    log = StateLog()
    log.add(b"t", b"not json")
    log.add(b"t", b'{"hello": 1}')
    assert log.latest() == {} and log.skipped == 2


def test_a_key_names_its_trace_even_when_the_trace_id_holds_a_slash() -> None:
    assert of_trace(b"a/b", "a/b") and of_trace(b"a/b/12", "a/b")
    assert not of_trace(b"a/bc", "a/b") and not of_trace(b"a/b/x", "a/b")
    assert not of_trace(None, "a")
