"""Where one task's time goes in a chain mesh: each crossing of the broker, from the logs.

Every record carries its producer's timestamp (when it was sent), so the records one task
left on the tasks topic, the outbox, each event topic and the results topic give the time of
each leg: the keeper's (record read, transition applied, output sent) and each agent's
(event read, step run, step record sent). The last leg, result to client, is the client's
receive time minus the result record's timestamp. On Apache Kafka with transactions a
record's timestamp is taken inside its transaction, so a leg includes the previous writer's
commit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from choreo.bench.stats import Summary
from choreo.schemas import Envelope, decode
from choreo.schemas.records import ADMIT

#: Record timestamps (ms since the epoch) of one trace, as the chain left them.
Timeline = dict[str, float]


@dataclass(frozen=True)
class Leg:
    """One crossing: ``start`` and ``end`` name records of the timeline; ``by`` does the work."""

    label: str
    by: str
    start: str
    end: str


def chain_legs(length: int, event_topic: Sequence[str]) -> list[Leg]:
    """The legs of a task through a chain of ``length`` agents (``relay-1`` …), whose agent
    *i* reads ``event_topic[i - 1]``."""
    legs = [
        Leg(
            f"task → event for relay-1 ({event_topic[0]})",
            "keeper: admit, forward",
            "task",
            "event.1",
        )
    ]
    for i in range(1, length + 1):
        legs.append(
            Leg(
                f"event → step record of relay-{i}",
                f"relay-{i}: read, step, send",
                f"event.{i}",
                f"step.{i}",
            )
        )
        if i < length:
            legs.append(
                Leg(
                    f"step record → event for relay-{i + 1}",
                    "keeper: read, fold, forward",
                    f"step.{i}",
                    f"event.{i + 1}",
                )
            )
    legs += [
        Leg(
            "last step record → terminal record",
            "keeper: read, fold, finish",
            f"step.{length}",
            "result",
        ),
        Leg("terminal record → client", "client: read", "result", "seen"),
    ]
    return legs


def timeline(
    task_ms: float,
    outbox: Sequence[tuple[float, bytes]],
    events: Mapping[int, float],
    result_ms: float,
    seen_ms: float,
) -> Timeline:
    """One trace's timeline from its records: ``outbox`` as (timestamp, value) pairs (the
    steps are told apart by their source, ``relay-<i>``), ``events`` by agent index."""
    marks: Timeline = {"task": task_ms, "result": result_ms, "seen": seen_ms}
    marks |= {f"event.{i}": ts for i, ts in events.items()}
    for ts, value in outbox:
        step = decode(value, Envelope)
        if step.type != ADMIT:
            marks[f"step.{step.source.rsplit('-', 1)[1]}"] = ts
    return marks


def summarize(legs: list[Leg], timelines: list[Timeline]) -> list[tuple[Leg, Summary]]:
    """Each leg with its durations in ms, over the timelines that have both its ends."""
    return [
        (
            leg,
            Summary.of(
                [t[leg.end] - t[leg.start] for t in timelines if leg.start in t and leg.end in t]
            ),
        )
        for leg in legs
    ]
