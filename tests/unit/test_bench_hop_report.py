"""``choreo bench hop``'s report: one column per broker, each floor from its own relay."""

from __future__ import annotations

from choreo.bench import legs
from choreo.bench.hop import HopBench, report
from choreo.bench.stats import Summary
from choreo.schemas import Envelope, encode
from choreo.schemas.records import ADMIT

LEGS = legs.chain_legs(2, ["hop.1", "hop.2"])


def bench(step_ms: float, relay_ms: float) -> HopBench:
    return HopBench(
        mesh_step_ms=Summary.of([step_ms] * 3),
        python_step_ms=Summary.of([step_ms - 5] * 3),
        relay_leg_ms=Summary.of([relay_ms]),
        traces=1,
        chain=2,
        legs=[(leg, Summary.of([relay_ms])) for leg in LEGS],
        task_ms=Summary.of([step_ms * 3]),
    )


def _outbox(ts: float, event_type: str, source: str) -> tuple[float, bytes]:
    return ts, encode(
        Envelope(event_id=f"{source}-{ts}", trace_id="t", type=event_type, source=source)
    )


def test_each_leg_runs_from_one_record_of_the_task_to_the_next() -> None:
    def one(offset: float) -> legs.Timeline:
        return legs.timeline(
            task_ms=offset,
            events={1: offset + 3, 2: offset + 20},
            result_ms=offset + 40,
            seen_ms=offset + 46,
            outbox=[
                _outbox(offset + 2, ADMIT, "task"),
                _outbox(offset + 12, "s.1", "relay-1"),
                _outbox(offset + 31, "s.2", "relay-2"),
            ],
        )

    summary = legs.summarize(LEGS, [one(1000.0), one(5000.0)])
    assert [(leg.start, leg.end, s.p50, s.count) for leg, s in summary] == [
        ("task", "event.1", 3, 2),
        ("event.1", "step.1", 9, 2),
        ("step.1", "event.2", 8, 2),
        ("event.2", "step.2", 11, 2),
        ("step.2", "result", 9, 2),
        ("result", "seen", 6, 2),
    ]


def test_the_legs_table_has_a_column_per_broker_and_their_sum() -> None:
    lines = report(
        {"embedded": bench(30.0, 10.0), "kafka": bench(20.0, 8.0)}, "choreo bench hop"
    ).splitlines()
    assert "| leg | done by | embedded broker | Apache Kafka |" in lines
    assert (
        "| event → step record of relay-2 | relay-2: read, step, send | 10 / 10 | 8 / 8 |" in lines
    )
    assert "| sum of the legs' p50 | | 60 | 48 |" in lines
    assert "| whole task, task record to client, p50 / p90 | | 90 / 90 | 60 / 60 |" in lines


def test_each_broker_gets_a_column_and_its_floor_from_its_own_relay() -> None:
    text = report(
        {"embedded": bench(30.0, 10.0), "kafka": bench(20.0, 8.0)},
        "choreo bench hop --brokers embedded kafka",
    )
    lines = text.splitlines()
    assert "| per | embedded broker | Apache Kafka |" in lines
    assert "| floor: two relay legs, p50 | 20.0 | 16.0 |" in lines
    assert "| the mesh's own work: mesh step minus floor, p50 | 10.0 | 4.0 |" in lines
    assert (
        "| raw relay leg (consume → produce) | 10.0 / 10.0 / 10.0 (1) | "
        "8.0 / 8.0 / 8.0 (1) |" in lines
    )
    assert "Command: `choreo bench hop --brokers embedded kafka`" in lines


def test_one_broker_gives_one_column_titled_by_its_kind() -> None:
    text = report({"kafka": bench(20.0, 8.0)}, "choreo bench hop")
    assert "| per | Apache Kafka |" in text.splitlines()
    assert "embedded broker" not in text
