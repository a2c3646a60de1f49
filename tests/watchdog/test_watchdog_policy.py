"""The verdict policy over whole hop sequences: shift first, halt after, never twice."""

from __future__ import annotations

from choreo.schemas import Budget, ControlVerdict, Escalation, HopRecord, Totals
from choreo.services.watchdog.config import WatchdogSpec
from choreo.services.watchdog.detectors import TraceWatch
from choreo.services.watchdog.policy import Answer, SnapshotHead, Watchdog
from tests.watchdog.support import T0, hop

SPEC = WatchdogSpec()


def feed(dog: Watchdog, watch: TraceWatch, hops: list[HopRecord]) -> list[tuple[int, Answer]]:
    return [(h.hop, a) for h in hops for a in dog.on_hop(watch, h, T0)]


def summary(answers: list[tuple[int, Answer]]) -> list[tuple[int, str, str, str | None]]:
    return [(n, a.action, a.reason, a.agent) if isinstance(a, ControlVerdict)
            else (n, "escalation", a.reason, None) for n, a in answers]


def healthy_writer_editor() -> list[HopRecord]:
    """Drafts change each round and every step reaches a new state."""
    drafts = [
        "Kafka is a log. Producers append records, consumers read them at their own pace.",
        "Kafka is a distributed, partitioned commit log: producers append, groups share reads.",
        "Think of Kafka as an append-only ledger split into partitions, replicated for safety.",
        "A topic is split into ordered partitions; each consumer group tracks its own offsets.",
    ]
    reviews = [
        "Too terse: explain partitions.", "Better. Mention replication.",
        "Good. Now say how consumers scale.", "Approved.",
    ]
    records = []
    for i, (draft, review) in enumerate(zip(drafts, reviews, strict=True)):
        records.append(hop(2 * i + 1, "writer", state=f"w{i}", fingerprint=f"fw{i}", output=draft))
        records.append(hop(2 * i + 2, "editor", state=f"e{i}", fingerprint=f"fe{i}",
                           output=review))
    return records


def test_healthy_writer_editor_gets_no_verdict() -> None:
    dog = Watchdog(SPEC, Budget(max_hops=25))
    assert feed(dog, TraceWatch(trace_id="t1"), healthy_writer_editor()) == []


def test_cycle_shifts_each_agent_then_halts_and_escalates_once() -> None:
    dog = Watchdog(SPEC, Budget(max_hops=25))
    watch = TraceWatch(trace_id="t1")
    loop = [hop(n, "writer" if n % 2 else "editor", state="s-w" if n % 2 else "s-e",
                fingerprint="f-w" if n % 2 else "f-e", output=f"attempt {n}")
            for n in range(1, 12)]
    answers = feed(dog, watch, loop)
    assert summary(answers) == [
        (3, "persona_shift", "loop.cycle", "writer"),
        (4, "persona_shift", "loop.cycle", "editor"),
        (7, "halt", "loop.cycle", "writer"),
        (7, "escalation", "loop.cycle", None),
    ]
    shift = answers[0][1]
    assert isinstance(shift, ControlVerdict)
    assert shift.temperature == SPEC.shift_temperature
    assert shift.system_prompt == SPEC.shift_system_prompt
    assert shift.evidence["matched"][0]["hops"] == [1, 3]
    halt, escalation = answers[2][1], answers[3][1]
    assert isinstance(halt, ControlVerdict) and isinstance(escalation, Escalation)
    assert halt.evidence["shifted_at"] == 3 and halt.evidence["after_shift"] == [5, 7]
    assert escalation.evidence == halt.evidence
    assert escalation.state_version == 7


def test_verdict_ids_are_deterministic() -> None:
    loop = [hop(n, "writer", state="s", fingerprint="f", output="same") for n in range(1, 8)]
    first = feed(Watchdog(SPEC, Budget()), TraceWatch(trace_id="t1"), loop)
    again = feed(Watchdog(SPEC, Budget()), TraceWatch(trace_id="t1"), loop)
    ids = [a.verdict_id if isinstance(a, ControlVerdict) else a.escalation_id for _, a in first]
    assert ids == [a.verdict_id if isinstance(a, ControlVerdict) else a.escalation_id
                   for _, a in again]
    assert len(set(ids)) == len(ids)


def test_stuck_output_without_a_repeated_state() -> None:
    dog = Watchdog(SPEC, Budget())
    watch = TraceWatch(trace_id="t1")
    text = "I cannot finish this draft because the outline is missing section three."
    records = [hop(n, "writer", state=f"s{n}", fingerprint=f"f{n}", output=f"{text} ({n})")
               for n in range(1, 5)]
    assert summary(feed(dog, watch, records)) == [(4, "persona_shift", "loop.stuck", "writer")]
    shift = dog.on_hop(watch, hop(5, "writer", state="s5", fingerprint="f5", output="x"), T0)
    assert shift == []
    assert watch.agents["writer"].streak == []


def test_ping_pong_with_fresh_inputs_but_no_state_progress() -> None:
    dog = Watchdog(SPEC, Budget())
    watch = TraceWatch(trace_id="t1")
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    records = [hop(n, "writer" if n % 2 else "editor", state="a" if n % 2 else "b",
                   fingerprint=f"f{n}", output=words[n - 1] * 5) for n in range(1, 8)]
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
    records = [hop(n, "writer", state=f"s{n}", fingerprint=f"f{n}", output=f"draft {n}" * n,
                   tokens=20) for n in range(1, 5)]
    assert summary(feed(dog, watch, records)) == [
        (3, "halt", "budget.tokens", None),
        (3, "escalation", "budget.tokens", None),
    ]
    assert watch.halted and watch.agents == {}


def test_snapshot_budget_overrides_the_mesh_default() -> None:
    dog = Watchdog(SPEC, Budget(max_hops=2))
    watch = TraceWatch(trace_id="t1")
    head = SnapshotHead(trace_id="t1", budget=Budget(max_hops=10), admitted_at=T0)
    assert dog.on_snapshot(watch, head, T0) == []
    records = [hop(n, "writer", state=f"s{n}", fingerprint=f"f{n}", output=f"v{n}" * n)
               for n in range(1, 5)]
    assert feed(dog, watch, records) == []


def test_a_snapshot_with_a_tighter_budget_halts_on_known_totals() -> None:
    dog = Watchdog(SPEC, Budget())
    watch = TraceWatch(trace_id="t1")
    feed(dog, watch, [hop(1, "writer", state="s1", fingerprint="f1", output="v", tokens=300)])
    head = SnapshotHead(trace_id="t1", version=1, budget=Budget(max_tokens=500),
                        totals=Totals(hops=1, tokens_in=300, tokens_out=300))
    answers = dog.on_snapshot(watch, head, T0)
    assert [a.reason for a in answers] == ["budget.tokens", "budget.tokens"]


def test_wall_clock_counts_from_admission() -> None:
    dog = Watchdog(SPEC, Budget(max_seconds=3))
    watch = TraceWatch(trace_id="t1")
    dog.on_snapshot(watch, SnapshotHead(trace_id="t1", budget=Budget(max_seconds=3),
                                        admitted_at=T0), T0)
    records = [hop(n, "writer", state=f"s{n}", fingerprint=f"f{n}", output=f"v{n}" * n)
               for n in range(1, 5)]
    assert summary(feed(dog, watch, records)) == [
        (4, "halt", "budget.wall_clock", None),
        (4, "escalation", "budget.wall_clock", None),
    ]


def test_a_finished_trace_is_forgotten_and_gets_no_verdict() -> None:
    dog = Watchdog(SPEC, Budget(max_hops=1))
    watch = TraceWatch(trace_id="t1")
    dog.on_snapshot(watch, SnapshotHead(trace_id="t1", status="completed"), T0)
    late = hop(5, "writer", state="s", fingerprint="f", output="late")
    assert dog.on_hop(watch, late, T0) == []
    assert watch.finished and watch.event_ids == []
