"""Human escalations: list them, resume a halted trace with guidance, or close it.

An escalation's history is a series of records with one ``escalation_id`` on the
escalations topic (``open`` from the watchdog, then ``resumed`` or ``closed`` from an
operator); the latest record is its current state. Resuming never reopens the halted trace:
a new trace starts from its last state, with the guidance added and a fresh budget, and
points back to it, so every trace id keeps exactly one terminal record. The continuation
starts clean: the halted trace's bookkeeping (join arrivals; scratch fields are already gone
from a finished trace) is not carried over, so its fan-outs and joins run again.
"""

from __future__ import annotations

import msgspec

from choreo.client import queries
from choreo.kafka.clients import make_producer, read_topic
from choreo.keeper.fold import carried_over
from choreo.observe.settings import Settings
from choreo.schemas import Escalation, Task, encode
from choreo.schemas.ids import derive_event_id
from choreo.schemas.topics import Topics


class EscalationError(LookupError):
    """The escalation does not exist or is no longer open."""


async def current(bootstrap: str, settings: Settings) -> list[Escalation]:
    """Every escalation in its latest state, oldest first."""
    topics = Topics(settings.topic_prefix)
    latest: dict[str, Escalation] = {}
    for record in await read_topic(bootstrap, settings, topics.escalations):
        escalation = queries.decoded(record, Escalation)  # a bad record is skipped, logged
        if escalation is not None:
            latest[escalation.escalation_id] = escalation
    return sorted(latest.values(), key=lambda e: (e.created_at, e.escalation_id))


async def resolve(
    bootstrap: str, settings: Settings, escalation_id: str, *, guidance: str | None
) -> Escalation:
    """Resume (with ``guidance``) or close (without) an open escalation."""
    topics = Topics(settings.topic_prefix)
    found = {e.escalation_id: e for e in await current(bootstrap, settings)}
    escalation = found.get(escalation_id)
    if escalation is None:
        raise EscalationError(f"no escalation {escalation_id!r}")
    if escalation.status != "open":
        follow = (
            f" (continuation trace {escalation.continuation_trace_id})"
            if escalation.continuation_trace_id
            else ""
        )
        raise EscalationError(
            f"escalation {escalation_id} is already {escalation.status}"
            f"{follow}; it can be resolved only once"
        )
    if guidance is None:
        updated = msgspec.structs.replace(escalation, status="closed")
    else:
        snapshot = await queries.latest_snapshot(
            bootstrap, settings, topics.state, escalation.trace_id
        )
        continuation = derive_event_id(escalation_id, "resume")
        state = carried_over(snapshot.fields)
        task = Task(
            input=str(snapshot.fields.get("input", "")),
            trace_id=continuation,
            parent_trace_id=escalation.trace_id,
            initial_state={**state, "guidance": guidance},
        )
        await queries.submit(bootstrap, topics.tasks, task)
        updated = msgspec.structs.replace(
            escalation, status="resumed", guidance=guidance, continuation_trace_id=continuation
        )
    producer = make_producer(bootstrap, "choreo-cli")
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.escalations, encode(updated), key=escalation.trace_id.encode()
        )
    finally:
        await producer.stop()
    return updated
