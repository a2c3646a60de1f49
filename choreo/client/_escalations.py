"""Human escalations: their current state, and what resolving one writes.

An escalation's history is a series of records with one ``escalation_id`` on the
escalations topic (``open`` from the watchdog, then ``resumed`` or ``closed`` from an
operator); the latest record is its current state. Resuming never reopens the halted trace:
a new trace starts from its last state, with the guidance added and a fresh budget, and
points back to it, so every trace id keeps exactly one terminal record. The continuation
starts clean: the halted trace's bookkeeping (join arrivals; scratch fields are already gone
from a finished trace) is not carried over, so its fan-outs and joins run again.

Pure functions: choreo.client.Client reads the records and writes what these return.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from aiokafka.structs import ConsumerRecord

from choreo.client._reader import decoded
from choreo.client.errors import EscalationError
from choreo.keeper.fold import carried_over
from choreo.schemas import Escalation, Snapshot, Task
from choreo.schemas.ids import derive_event_id


def current(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[Escalation]:
    """Every escalation in its latest state, oldest first; records that do not decode are
    skipped (logged)."""
    latest: dict[str, Escalation] = {}
    for record in records:
        escalation = decoded(record, Escalation)
        if escalation is not None:
            latest[escalation.escalation_id] = escalation
    return sorted(latest.values(), key=lambda e: (e.created_at, e.escalation_id))


def still_open(escalations: Iterable[Escalation], escalation_id: str) -> Escalation:
    """The open escalation ``escalation_id``.

    Raises:
        EscalationError: there is none, or it was resumed or closed already.
    """
    escalation = {e.escalation_id: e for e in escalations}.get(escalation_id)
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
    return escalation


def closed(escalation: Escalation) -> Escalation:
    """The escalation's record once closed without resuming."""
    return msgspec.structs.replace(escalation, status="closed")


def resumed(escalation: Escalation, halted: Snapshot, guidance: str) -> tuple[Task, Escalation]:
    """The continuation task (from the halted trace's last state ``halted``, with the guidance
    and a fresh budget) and the escalation's record once resumed. The continuation's trace id
    derives from the escalation's id: sent again, the keeper refuses it as already admitted."""
    continuation = derive_event_id(escalation.escalation_id, "resume")
    task = Task(
        input=str(halted.fields.get("input", "")),
        trace_id=continuation,
        parent_trace_id=escalation.trace_id,
        initial_state={**carried_over(halted.fields), "guidance": guidance},
    )
    updated = msgspec.structs.replace(
        escalation, status="resumed", guidance=guidance, continuation_trace_id=continuation
    )
    return task, updated
