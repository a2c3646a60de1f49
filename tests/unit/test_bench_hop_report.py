"""``choreo bench hop``'s report: one column per broker, each floor from its own relay."""

from __future__ import annotations

from choreo.services.bench.hop import HopBench, report
from choreo.services.bench.stats import Summary


def bench(step_ms: float, relay_ms: float) -> HopBench:
    return HopBench(mesh_step_ms=Summary.of([step_ms] * 3),
                    python_step_ms=Summary.of([step_ms - 5] * 3),
                    relay_leg_ms=Summary.of([relay_ms]), traces=1, chain=4)


def test_each_broker_gets_a_column_and_its_floor_from_its_own_relay() -> None:
    text = report({"embedded": bench(30.0, 10.0), "kafka": bench(20.0, 8.0)},
                  "choreo bench hop --brokers embedded kafka")
    lines = text.splitlines()
    assert "| per | embedded broker | Apache Kafka |" in lines
    assert "| floor: two relay legs, p50 | 20.0 | 16.0 |" in lines
    assert "| the mesh's own work: mesh step minus floor, p50 | 10.0 | 4.0 |" in lines
    assert "| raw relay leg (consume → produce) | 10.0 / 10.0 / 10.0 (1) | " \
           "8.0 / 8.0 / 8.0 (1) |" in lines
    assert "Command: `choreo bench hop --brokers embedded kafka`" in lines


def test_one_broker_gives_one_column_titled_by_its_kind() -> None:
    text = report({"kafka": bench(20.0, 8.0)}, "choreo bench hop")
    assert "| per | Apache Kafka |" in text.splitlines()
    assert "embedded broker" not in text
