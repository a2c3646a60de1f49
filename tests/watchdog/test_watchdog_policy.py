"""The verdict policy over whole hop sequences: shift first, halt after, never twice."""

from __future__ import annotations

from choreo.schemas import Budget, HopRecord, Totals
from choreo.spec.watchdog import WatchdogSpec
from choreo.watchdog.detectors import TraceWatch
from choreo.watchdog.policy import Answer, SnapshotHead, Watchdog
from tests.watchdog.support import T0, hop

SPEC = WatchdogSpec()


def feed(dog: Watchdog, watch: TraceWatch, hops: list[HopRecord]) -> list[tuple[int, Answer]]:
    """Each hop in turn; a persona shift takes effect at once, as if the keeper applied it
    before the next step read the state."""
    answers = []
    for h in hops:
        for answer in dog.on_hop(watch, h, T0):
            answers.append((h.hop, answer))
            if answer.action == "persona_shift":
                dog.on_snapshot(
                    watch,
                    SnapshotHead(
                        trace_id=h.trace_id,
                        version=h.state_version,
                        personas={str(answer.agent): {}},
                    ),
                    T0,
                )
    return answers


def summary(answers: list[tuple[int, Answer]]) -> list[tuple[int, str, str, str | None]]:
    return [(n, a.action, a.reason, a.agent) for n, a in answers]


def healthy_writer_editor() -> list[HopRecord]:
    """Drafts change each round and every step reaches a new state."""
    drafts = [
        "Kafka is a log. Producers append records, consumers read them at their own pace.",
        "Kafka is a distributed, partitioned commit log: producers append, groups share reads.",
        "Think of Kafka as an append-only ledger split into partitions, replicated for safety.",
        "A topic is split into ordered partitions; each consumer group tracks its own offsets.",
    ]
    reviews = [
        "Too terse: explain partitions.",
        "Better. Mention replication.",
        "Good. Now say how consumers scale.",
        "Approved.",
    ]
    records = []
    for i, (draft, review) in enumerate(zip(drafts, reviews, strict=True)):
        records.append(hop(2 * i + 1, "writer", state=f"w{i}", fingerprint=f"fw{i}", output=draft))
        records.append(hop(2 * i + 2, "editor", state=f"e{i}", fingerprint=f"fe{i}", output=review))
    return records


def test_healthy_writer_editor_gets_no_verdict() -> None:
    dog = Watchdog(SPEC, Budget(max_hops=25))
    assert feed(dog, TraceWatch(trace_id="t1"), healthy_writer_editor()) == []


def test_cycle_shifts_each_agent_then_halts_once() -> None:
    dog = Watchdog(SPEC, Budget(max_hops=25))
    watch = TraceWatch(trace_id="t1")
    loop = [
        hop(
            n,
            "writer" if n % 2 else "editor",
            state="s-w" if n % 2 else "s-e",
            fingerprint="f-w" if n % 2 else "f-e",
            output=f"attempt {n}",
        )
        for n in range(1, 12)
    ]
    answers = feed(dog, watch, loop)
    assert summary(answers) == [
        (3, "persona_shift", "loop.cycle", "writer"),
        (4, "persona_shift", "loop.cycle", "editor"),
        (5, "halt", "loop.cycle", "writer"),
    ]
    shift = answers[0][1]
    assert shift.temperature == SPEC.shift_temperature
    assert shift.system_prompt == SPEC.shift_system_prompt
    assert shift.evidence["matched"][0]["hops"] == [1, 3]
    halt = answers[2][1]
    assert halt.evidence["shifted_at"] == 3 and halt.evidence["after_shift"] == [5]


def test_verdict_ids_are_deterministic() -> None:
    loop = [hop(n, "writer", state="s", fingerprint="f", output="same") for n in range(1, 8)]
    first = feed(Watchdog(SPEC, Budget()), TraceWatch(trace_id="t1"), loop)
    again = feed(Watchdog(SPEC, Budget()), TraceWatch(trace_id="t1"), loop)
    ids = [a.verdict_id for _, a in first]
    assert ids == [a.verdict_id for _, a in again]
    assert len(set(ids)) == len(ids)


def test_stuck_output_without_a_repeated_state() -> None:
    dog = Watchdog(SPEC, Budget())
    watch = TraceWatch(trace_id="t1")
    text = "I cannot finish this draft because the outline is missing section three."
    records = [
        hop(
            n,
            "writer",
            state=f"s{n}",
            fingerprint=f"f{n}",
            output=f"{text} ({n})",
            situation="same",
        )
        for n in range(1, 5)
    ]
    assert summary(feed(dog, watch, records)) == [(4, "persona_shift", "loop.stuck", "writer")]
    shift = dog.on_hop(watch, hop(5, "writer", state="s5", fingerprint="f5", output="x"), T0)
    assert shift == []  # a different output ends the streak
    assert watch.agents["writer"].streak == []


def test_ping_pong_with_fresh_inputs_but_no_state_progress() -> None:
    dog = Watchdog(SPEC, Budget())
    watch = TraceWatch(trace_id="t1")
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    records = [
        hop(
            n,
            "writer" if n % 2 else "editor",
            state="a" if n % 2 else "b",
            fingerprint=f"f{n}",
            output=words[n - 1] * 5,
        )
        for n in range(1, 8)
    ]
    assert summary(feed(dog, watch, records)) == [
        (6, "persona_shift", "loop.ping_pong", "editor"),
        (7, "persona_shift", "loop.ping_pong", "writer"),
    ]


def test_duplicate_hop_records_are_ignored() -> None:
    dog = Watchdog(SPEC, Budget())
    watch = TraceWatch(trace_id="t1")
    first = hop(1, "writer", state="s", fingerprint="f", output="same")
    assert dog.on_hop(watch, first, T0) == []
    assert dog.on_hop(watch, first, T0) == []  # a redelivery is no cycle
    assert watch.event_ids == ["t1-e1"]


def test_budget_exhaustion_halts_at_once_and_only_once() -> None:
    dog = Watchdog(SPEC, Budget(max_tokens=100))
    watch = TraceWatch(trace_id="t1")
    records = [
        hop(n, "writer", state=f"s{n}", fingerprint=f"f{n}", output=f"draft {n}" * n, tokens=20)
        for n in range(1, 5)
    ]
    assert summary(feed(dog, watch, records)) == [
        (3, "halt", "budget.tokens", None),
    ]
    assert watch.halted and watch.agents == {}


def test_snapshot_budget_overrides_the_mesh_default() -> None:
    dog = Watchdog(SPEC, Budget(max_hops=2))
    watch = TraceWatch(trace_id="t1")
    head = SnapshotHead(trace_id="t1", budget=Budget(max_hops=10), admitted_at=T0)
    assert dog.on_snapshot(watch, head, T0) == []
    records = [
        hop(n, "writer", state=f"s{n}", fingerprint=f"f{n}", output=f"v{n}" * n)
        for n in range(1, 5)
    ]
    assert feed(dog, watch, records) == []


def test_a_snapshot_with_a_tighter_budget_halts_on_known_totals() -> None:
    dog = Watchdog(SPEC, Budget())
    watch = TraceWatch(trace_id="t1")
    feed(dog, watch, [hop(1, "writer", state="s1", fingerprint="f1", output="v", tokens=300)])
    head = SnapshotHead(
        trace_id="t1",
        version=1,
        budget=Budget(max_tokens=500),
        totals=Totals(hops=1, tokens_in=300, tokens_out=300),
    )
    answers = dog.on_snapshot(watch, head, T0)
    assert [(a.action, a.reason) for a in answers] == [("halt", "budget.tokens")]


def test_wall_clock_counts_from_admission() -> None:
    dog = Watchdog(SPEC, Budget(max_seconds=3))
    watch = TraceWatch(trace_id="t1")
    dog.on_snapshot(
        watch, SnapshotHead(trace_id="t1", budget=Budget(max_seconds=3), admitted_at=T0), T0
    )
    records = [
        hop(n, "writer", state=f"s{n}", fingerprint=f"f{n}", output=f"v{n}" * n)
        for n in range(1, 5)
    ]
    assert summary(feed(dog, watch, records)) == [
        (4, "halt", "budget.wall_clock", None),
    ]


def test_a_finished_trace_is_forgotten_and_gets_no_verdict() -> None:
    dog = Watchdog(SPEC, Budget(max_hops=1))
    watch = TraceWatch(trace_id="t1")
    dog.on_snapshot(watch, SnapshotHead(trace_id="t1", status="completed"), T0)
    late = hop(5, "writer", state="s", fingerprint="f", output="late")
    assert dog.on_hop(watch, late, T0) == []
    assert watch.finished and watch.event_ids == []


# -- progress-aware rules ------------------------------------------------------------------


def checklist() -> list[HopRecord]:
    """One agent, ten items, one new field per item, replies from one template."""
    return [
        hop(
            n,
            "checker",
            state=f"s{n}",
            fingerprint=f"f{n}",
            situation=f"sit{n}",
            output=f"Checked item {n} of the list: present, labelled and in working order.",
            fields={**{f"item_{i}": f"v{i}" for i in range(1, n + 1)}, "count": "n"},
        )
        for n in range(1, 11)
    ]


def test_a_checklist_of_similar_replies_that_moves_the_state_gets_no_verdict() -> None:
    assert feed(Watchdog(SPEC, Budget()), TraceWatch(trace_id="t1"), checklist()) == []


def test_a_revise_loop_that_converges_gets_no_persona_shift() -> None:
    base = "The log keeps events in order per key; consumers read at their own pace"
    records = []
    for i in range(4):
        records.append(
            hop(
                2 * i + 1,
                "author",
                state=f"a{i}",
                fingerprint=f"fa{i}",
                output=f"{base}{'.' * (i + 1)} Revision {i}.",
                situation=f"r{i}",
                fields={"draft": f"d{i}", "review": f"r{i}"},
            )
        )
        records.append(
            hop(
                2 * i + 2,
                "critic",
                state=f"c{i}",
                fingerprint=f"fc{i}",
                output="REVISE: tighten it." if i < 3 else "APPROVED",
                situation=f"d{i}",
                fields={"draft": f"d{i}", "review": f"r{i + 1}"},
            )
        )
    assert feed(Watchdog(SPEC, Budget()), TraceWatch(trace_id="t1"), records) == []


def test_a_fix_that_flips_between_two_variants_beside_a_counter_is_a_loop() -> None:
    records = [
        hop(
            n,
            "fixer",
            state=f"s{n}",
            fingerprint=f"f{n}",
            situation=f"v{n % 2}",
            output=["Use a lock around the cache.", "Use an atomic swap instead."][n % 2],
            fields={"fix": f"v{n % 2}", "attempts": "n"},
        )
        for n in range(1, 10)
    ]
    answers = summary(feed(Watchdog(SPEC, Budget()), TraceWatch(trace_id="t1"), records))
    assert answers[0][:3] == (4, "persona_shift", "loop.revisit")
    assert answers[-1][1] == "halt" and answers[-1][0] <= 8


def test_one_line_replies_that_differ_by_a_number_are_stuck() -> None:
    records = [
        hop(
            n,
            "poller",
            state=f"s{n}",
            fingerprint=f"f{n}",
            situation="same",
            output=f"Still waiting on job {1000 + n}, retry {n}.",
            fields={"status": "waiting", "tries": "n"},
        )
        for n in range(1, 8)
    ]
    answers = summary(feed(Watchdog(SPEC, Budget()), TraceWatch(trace_id="t1"), records))
    assert answers[:2] == [
        (4, "persona_shift", "loop.stuck", "poller"),
        (5, "halt", "loop.stuck", "poller"),
    ]


def test_the_same_tool_call_again_and_again_is_a_loop() -> None:
    records = [
        hop(
            n,
            "coder",
            state=f"s{n}",
            fingerprint=f"f{n}",
            output=f"attempt {'x' * n}",
            situation=f"s{n}",
            fields={"log": f"l{n}"},
            tools=[("sandbox", "same-code"), ("search", f"q{n}")],
        )
        for n in range(1, 4)
    ]
    (shift,) = feed(Watchdog(SPEC, Budget()), TraceWatch(trace_id="t1"), records)
    assert (shift[0], shift[1].reason) == (3, "loop.tool_repeat")
    assert shift[1].evidence["matched"][0]["details"]["tool"] == "sandbox"


def test_the_hop_that_ends_a_trace_closes_its_watch() -> None:
    dog = Watchdog(SPEC, Budget())
    watch = TraceWatch(trace_id="t1")
    loop = [hop(n, "writer", state="s", fingerprint="f", output="same") for n in range(1, 3)]
    feed(dog, watch, loop)
    done = hop(3, "writer", state="s", fingerprint="f", output="same")
    done.type = "trace.finish"
    assert dog.on_hop(watch, done, T0) == [] and watch.finished


def test_evidence_from_steps_that_ran_before_the_shift_took_effect_does_not_halt() -> None:
    dog = Watchdog(SPEC, Budget())
    watch = TraceWatch(trace_id="t1")
    loop = [hop(n, "writer", state="s", fingerprint="f", output="same") for n in range(1, 7)]
    answers = [(h.hop, a) for h in loop for a in dog.on_hop(watch, h, T0)]
    assert summary(answers) == [(2, "persona_shift", "loop.cycle", "writer")]
    # the keeper applies the shift at version 7: only steps that read it can halt the trace
    dog.on_snapshot(watch, SnapshotHead(trace_id="t1", version=7, personas={"writer": {}}), T0)
    later = [hop(n, "writer", state="s", fingerprint="f", output="same") for n in range(7, 10)]
    assert summary(feed(dog, watch, later)) == [(8, "halt", "loop.cycle", "writer")]
