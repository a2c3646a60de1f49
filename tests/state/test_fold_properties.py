"""Properties of the state model over random interleavings of parallel agents' deltas.

Each example: up to three agents each take one to three steps on one trace; every agent's
first step reads version 1 (a fan-out) and each later step reads the version its previous
step produced, so steps of different agents are concurrent. Arrival order is random.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.kafka.limits import RecordLimit
from choreo.keeper.batch import Batch
from choreo.keeper.machine import Keeper
from choreo.keeper.replay import replay
from choreo.schemas import Envelope, TerminalResult, reducers
from choreo.schemas.deltas import StateLog
from choreo.schemas.records import FINISH
from tests.state.support import (
    AGENTS,
    TOPICS,
    Outbox,
    conflicts,
    mesh,
    plain,
    results,
    run,
    sent,
    step,
)

SPEC = mesh()
TRACE = "prop"
REPLACE = ("lww", "fww")

DELTA = st.fixed_dictionaries(
    {},
    optional={
        "log": st.text("abc", max_size=2),
        "items": st.lists(st.integers(0, 9), max_size=3),
        "n": st.integers(-5, 5),
        "hi": st.integers(-50, 50),
        "lo": st.integers(-50, 50),
        "tags": st.lists(st.sampled_from("wxyz"), max_size=3),
        "doc": st.dictionaries(st.sampled_from("pqr"), st.integers(0, 9), max_size=2),
        "lww": st.integers(0, 99),
        "fww": st.integers(0, 99),
        "notes": st.text("n", max_size=2),
    },
)
PLAN = st.dictionaries(st.sampled_from(AGENTS), st.lists(DELTA, min_size=1, max_size=3), min_size=1)


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """A plan (each agent's deltas) and an arrival order of all its steps."""
    plan = draw(PLAN)
    order = draw(st.permutations([a for a, deltas in plan.items() for _ in deltas]))
    return plan, order


def arrivals(plan: dict[str, list[dict[str, Any]]], order: list[str]) -> list[tuple[Envelope, int]]:
    """Each step (with the version it read) and the version it is folded at, in order."""
    seen = dict.fromkeys(plan, 1)
    taken: Counter[str] = Counter()
    out = []
    for version, agent in enumerate(order, start=2):
        index = taken[agent]
        taken[agent] += 1
        out.append((step(TRACE, agent, index, seen[agent], plan[agent][index]), version))
        seen[agent] = version
    return out


def outbox(plan: dict[str, list[dict[str, Any]]], order: list[str], finish: bool = False) -> Outbox:
    log = Outbox()
    log.admit(SPEC, TRACE)
    for envelope, _ in arrivals(plan, order):
        log.write(envelope)
    if finish:
        log.write(step(TRACE, "closer", 0, len(order) + 1, {}, event_type=FINISH))
    return log


def written(steps: list[tuple[Envelope, int]], name: str) -> list[tuple[Envelope, int, Any]]:
    return [(e, v, e.delta[name]) for e, v in steps if e.delta and name in e.delta]


@settings(max_examples=150, deadline=None)
@given(runs())
def test_the_folded_state_follows_each_reducer(run_: Any) -> None:
    plan, order = run_
    steps = arrivals(plan, order)
    keeper, batch = run(SPEC, outbox(plan, order).records)
    state = keeper.traces[TRACE]
    fields = state.fields
    values = {name: [w for _, _, w in written(steps, name)] for name in SPEC.state}

    assert state.version == 1 + len(order)
    assert sorted(state.applied[1:]) == sorted(e.event_id for e, _ in steps)
    assert fields.get("log", []) == values["log"]  # every append, once, in fold order
    assert fields.get("items", []) == [i for items in values["items"] for i in items]
    assert fields["n"] == sum(values["n"])
    assert fields.get("hi") == (max(values["hi"]) if values["hi"] else None)
    assert fields.get("lo") == (min(values["lo"]) if values["lo"] else None)
    assert fields.get("tags", []) == sorted({t for tags in values["tags"] for t in tags})
    expected_doc: dict[str, int] = {}
    for doc in values["doc"]:
        expected_doc.update(doc)
    assert fields.get("doc", {}) == expected_doc
    assert fields.get("lww") == (values["lww"][-1] if values["lww"] else None)
    assert fields["join.all"] == order  # the join counted every arrival, once
    assert len(sent(batch, TOPICS.event("wrap.requested"))) == (1 if len(order) >= 3 else 0)

    # replace fields: a write that did not see the field's last write is a conflict
    for name in REPLACE:
        policy = SPEC.field(name).conflict
        kept: tuple[int, str, Any] | None = None  # version, agent, value of the standing write
        expected = []
        for envelope, version, value in written(steps, name):
            incoming = (version, envelope.source, value)
            if kept is not None and kept[0] > envelope.state_version:
                winner, loser = (
                    (incoming, kept) if policy == "last_writer_wins" else (kept, incoming)
                )
                expected.append((version, envelope.state_version, winner, loser))
                kept = winner
            else:
                kept = incoming
        got = [
            (
                c.version,
                c.base_version,
                (c.kept.version, c.kept.agent, c.kept_value),
                (c.other.version, c.other.agent, c.other_value),
            )
            for c in conflicts(batch)
            if c.field == name and c.policy == policy
        ]
        assert got == expected
        assert fields.get(name) == (kept[2] if kept else None)
        assert len([c for c in conflicts(batch) if c.field == name]) == len(expected)


@settings(max_examples=100, deadline=None)
@given(runs(), st.data())
def test_redelivered_records_change_nothing(run_: Any, data: st.DataObject) -> None:
    plan, order = run_
    records = outbox(plan, order).records
    with_repeats = list(records)
    for original in data.draw(st.lists(st.sampled_from(records), max_size=6)):
        first = with_repeats.index(original)
        at = data.draw(st.integers(first + 1, len(with_repeats)))
        with_repeats.insert(at, original)
    once, once_sent = run(SPEC, records)
    repeated, repeated_sent = run(SPEC, with_repeats)
    assert plain(repeated.traces[TRACE]) == plain(once.traces[TRACE])
    assert repeated_sent.records() == once_sent.records()  # a repeat sends nothing at all


@settings(max_examples=100, deadline=None)
@given(runs(), st.integers(1, 5), st.data())
def test_a_keeper_killed_anywhere_recovers_to_the_replayed_state(
    run_: Any, batch_size: int, data: st.DataObject
) -> None:
    """Batches are produced in two acked phases (events and results, then the state log's
    records), then committed. Kill the keeper in any batch, before its first phase, after it,
    or partway through its state records: the restarted keeper restores from the state log
    and the results, re-reads from the committed offset, logs on from where the log stands
    (the log folds to its state after each record), and ends exactly where a replay of the
    whole outbox ends, with one terminal record."""
    plan, order = run_
    records = outbox(plan, order, finish=True).records
    chunks = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
    crash_in = data.draw(st.integers(0, len(chunks) - 1))
    results_written = data.draw(st.booleans())

    keeper = Keeper(SPEC, TOPICS)
    log = StateLog()
    terminal: list[TerminalResult] = []
    committed = 0
    for number, chunk in enumerate(chunks):
        batch = Batch()
        for rec in chunk:
            keeper.apply(rec, batch)
        if number == crash_in and not results_written:
            break
        terminal += results(batch)
        written = batch.state_records()
        if number == crash_in:
            written = written[: data.draw(st.integers(0, len(written)))]
        for _, key, value in written:
            log.add(key.encode(), value)
        if number == crash_in:
            break
        keeper.settle(batch)
        committed += len(chunk)

    restarted = Keeper(SPEC, TOPICS)
    restarted.restore_log(log)
    for result in terminal:
        restarted.mark_finished(result)
    for rec in records[committed:]:
        batch = Batch()
        restarted.apply(rec, batch)
        terminal += results(batch)
        for _, key, value in batch.state_records():
            log.add(key.encode(), value)
        if TRACE in batch.snapshots:
            assert plain(log.state(TRACE)) == plain(batch.snapshots[TRACE])
        restarted.written(batch)

    rebuilt = replay(SPEC, TOPICS, records).traces[TRACE]
    assert rebuilt.status == "completed"
    assert "notes" not in rebuilt.fields  # scratch is dropped on finish
    assert plain(log.state(TRACE)) == plain(rebuilt)  # what every reader of the log sees
    assert restarted.traces[TRACE].status == "completed"
    assert len(terminal) == 1


@settings(max_examples=100, deadline=None)
@given(runs(), st.randoms(use_true_random=False))
def test_commutative_reducers_give_the_same_state_in_any_order(run_: Any, rnd: Any) -> None:
    plan, order = run_
    other = list(order)
    rnd.shuffle(other)
    first = run(SPEC, outbox(plan, order).records)[0].traces[TRACE].fields
    second = run(SPEC, outbox(plan, other).records)[0].traces[TRACE].fields
    commutative = [
        name for name, field in SPEC.state.items() if field.reducer in reducers.COMMUTATIVE
    ]
    assert sorted(commutative) == ["hi", "lo", "n", "tags"]  # the spec exercises each one
    for name in commutative:
        assert first.get(name) == second.get(name), name
    assert sorted(first.get("log", [])) == sorted(second.get("log", []))


@settings(max_examples=100, deadline=None)
@given(runs(), st.integers(1, 5), st.integers(1500, 4000))
def test_the_state_log_folds_to_the_live_state_after_every_batch(
    run_: Any, batch_size: int, limit: int
) -> None:
    """Whatever the batching and however small the record limit (full snapshots put off,
    deltas going on), a reader folding the state topic's records gets, after each batch, the
    very state the keeper holds."""
    plan, order = run_
    records = outbox(plan, order, finish=True).records
    keeper = Keeper(SPEC, TOPICS)
    log = StateLog()
    for start in range(0, len(records), batch_size):
        batch = Batch(limit=RecordLimit(limit))
        for rec in records[start : start + batch_size]:
            keeper.handle(keeper.apply, rec, batch)
        for _, key, value in batch.state_records():
            assert key == TRACE or value is None or len(value) <= limit  # deltas fit
            log.add(key.encode(), value)
        if TRACE in batch.snapshots:
            assert plain(log.state(TRACE)) == plain(batch.snapshots[TRACE])
        keeper.settle(batch)
