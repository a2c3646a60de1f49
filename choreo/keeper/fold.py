"""Pure state transitions of a trace: admit a task, fold a step's delta, finish.

The live keeper and every replay run these same functions over the same log, with timestamps
taken from the log records themselves, so a replay reproduces the live snapshots exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from choreo.budget import reserve as budget
from choreo.schemas import (
    AgentTotals,
    Budget,
    Envelope,
    Escalation,
    FieldWrite,
    Snapshot,
    StateConflict,
    Task,
    TerminalResult,
    Totals,
)
from choreo.schemas.blobs import is_ref
from choreo.schemas.codec import encode
from choreo.schemas.ids import derive_event_id
from choreo.schemas.records import STEP_REFUSED, Persona, ToolCallRecord
from choreo.schemas.reducers import ReducerError, resolve
from choreo.spec.mesh import ConflictPolicy, JoinSpec, MeshSpec
from choreo.tools.record import from_payload

TASK_SOURCE = "task"
#: The outbox record type of the deadline sweep's decision to end a trace (see Keeper.sweep).
EXPIRE = "trace.expire"
#: State fields that record a join's arrivals (``JoinSpec.field``).
JOIN_FIELD_PREFIX = "join."


#: Why a value shaped as a reference is refused.
RESERVED = 'an object with the key "$blob" is reserved for values by reference'


class FoldError(ValueError):
    """A delta cannot be folded (it does not fit a field's reducer); the trace fails.

    Not a ``ChoreoError``: it never leaves the keeper, which ends the trace with it."""


@dataclass
class Folded:
    """The outcome of folding one step: the new snapshot, every conflict it met, and the
    event types of the joins it completed (each emitted once, by the keeper)."""

    snapshot: Snapshot
    conflicts: list[StateConflict] = field(default_factory=list)
    rejected: bool = False
    joined: list[JoinSpec] = field(default_factory=list)


def extensions(step: Envelope, reason: str | None) -> dict[str, Any]:
    """A hop record's ``extensions``: why the keeper ended the step (``reason``) and the
    step's notes on the tools it offered (renamed, left out, capped: choreo.tools.names)."""
    out: dict[str, Any] = {"reason": reason} if reason else {}
    notes = step.payload.get("notes")
    if isinstance(notes, list) and notes and all(isinstance(n, str) for n in notes):
        out["notes"] = notes
    return out


def tool_calls(step: Envelope) -> list[ToolCallRecord]:
    """The step's tool calls for its hop record: the calls its model made (payload
    ``tool_calls``, as choreo.tools.record writes them) and the sandbox runs on its output
    that carry their arguments' hash (payload ``tools``). What the watchdog's repeated-call
    rule compares is the pair (name, ``args_sha256``)."""
    calls = from_payload(step)
    for entry in step.payload.get("tools", ()):
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("tool"), str)
            and isinstance(entry.get("args_sha256"), str)
        ):
            calls.append(
                ToolCallRecord(
                    name=entry["tool"],
                    args_sha256=entry["args_sha256"],
                    status="ok" if entry.get("status") == "ok" else "error",
                )
            )
    return calls


def escalation(
    snapshot: Snapshot, reason: str, evidence: dict[str, Any], at: datetime
) -> Escalation:
    """The one escalation of a halted trace, whoever halted it: its id derives from the trace
    id alone, so a second writer or a re-sent record can never make a second one."""
    return Escalation(
        escalation_id=derive_event_id(snapshot.trace_id, "escalation"),
        trace_id=snapshot.trace_id,
        reason=reason,
        evidence=evidence,
        state_version=snapshot.version,
        created_at=at,
    )


def resolve_budget(spec: MeshSpec, override: Budget | None, admitted_at: datetime) -> Budget:
    """The mesh's budgets with the task's overrides, and the wall-clock deadline fixed."""
    base = spec.budgets
    chosen = override or Budget()
    max_seconds = chosen.max_seconds if chosen.max_seconds is not None else base.max_seconds
    return Budget(
        max_hops=chosen.max_hops if chosen.max_hops is not None else base.max_hops,
        max_tokens=chosen.max_tokens if chosen.max_tokens is not None else base.max_tokens,
        max_cost=chosen.max_cost if chosen.max_cost is not None else base.max_cost,
        max_seconds=max_seconds,
        deadline=admitted_at + timedelta(seconds=max_seconds) if max_seconds else None,
    )


def admit(spec: MeshSpec, task: Task, trace_id: str, origin: str, at: datetime) -> Snapshot:
    """Version 1 of a trace: declared defaults, the task's initial state, and its input."""
    fields: dict[str, Any] = {
        name: f.default for name, f in spec.state.items() if f.default is not None
    }
    fields.update(task.initial_state or {})
    if reserved := [name for name, value in fields.items() if is_ref(value)]:
        raise FoldError(f"initial_state field {reserved[0]!r}: {RESERVED}")
    fields["input"] = task.input
    if task.metadata:
        fields["metadata"] = task.metadata
    return Snapshot(
        trace_id=trace_id,
        version=1,
        fields=fields,
        writes={name: FieldWrite(version=1, agent=TASK_SOURCE) for name in fields},
        budget=resolve_budget(spec, task.budget, at),
        origin=origin,
        parent_trace_id=task.parent_trace_id,
        admitted_at=at,
        updated_at=at,
    )


def encoded_size(snapshot: Snapshot) -> int:
    """The snapshot's size as the state topic gets it, in bytes."""
    return len(encode(snapshot))


def fold(
    spec: MeshSpec,
    snapshot: Snapshot,
    step: Envelope,
    at: datetime,
    measure: Callable[[Snapshot], int] = encoded_size,
) -> Folded:
    """Fold one step's delta into ``snapshot``; the input snapshot is left untouched.

    A ``replace`` field last written after the version the step read is a conflict: the step
    never saw that write. The field's policy decides, and the conflict is returned to be
    published. ``reject`` refuses the whole step, so a step's delta applies atomically or not
    at all. A fold whose snapshot would exceed ``spec.max_snapshot_bytes`` raises FoldError;
    ``measure`` gives a snapshot's encoded size (the keeper's knows its fields' sizes).
    """
    version = snapshot.version + 1
    fields = dict(snapshot.fields)
    writes = dict(snapshot.writes)
    conflicts: list[StateConflict] = []
    for name, value in (step.delta or {}).items():
        field_spec = spec.field(name)
        last = writes.get(name)
        if (
            field_spec.reducer == "replace"
            and last is not None
            and last.version > step.state_version
        ):
            conflict = _conflict(snapshot, step, name, value, last, field_spec.conflict, at)
            conflicts.append(conflict)
            if conflict.policy != "last_writer_wins":
                continue
        try:
            fields[name] = resolve(field_spec.reducer)(fields.get(name), value)
        except (ReducerError, TypeError, ValueError) as exc:
            raise FoldError(f"field {name!r} ({field_spec.reducer}): {exc}") from None
        if is_ref(fields[name]):  # only the keeper makes references (choreo.keeper.blobs)
            raise FoldError(f"field {name!r}: {RESERVED}")
        writes[name] = FieldWrite(version=version, agent=step.source)
    charged = charge(snapshot, step, at)
    if any(c.policy == "reject" for c in conflicts):
        return Folded(charged, conflicts, rejected=True)
    joined = _arrive(spec, step, fields, writes, version)
    new = msgspec.structs.replace(charged, fields=fields, writes=writes)
    check_size(spec, new, measure)
    return Folded(new, conflicts, joined=joined)


def _conflict(
    snapshot: Snapshot,
    step: Envelope,
    name: str,
    value: Any,
    last: FieldWrite,
    policy: ConflictPolicy,
    at: datetime,
) -> StateConflict:
    """Both writes of a collision, ordered as the policy decides which one stays."""
    incoming = (FieldWrite(version=snapshot.version + 1, agent=step.source), value)
    current = (last, snapshot.fields.get(name))
    kept, other = (incoming, current) if policy == "last_writer_wins" else (current, incoming)
    return StateConflict(
        trace_id=snapshot.trace_id,
        field=name,
        base_version=step.state_version,
        version=snapshot.version + 1,
        policy=policy,
        kept=kept[0],
        kept_value=kept[1],
        other=other[0],
        other_value=other[1],
        created_at=at,
    )


def _arrive(
    spec: MeshSpec,
    step: Envelope,
    fields: dict[str, Any],
    writes: dict[str, FieldWrite],
    version: int,
) -> list[JoinSpec]:
    """Count the step in every join waiting for its type; return the joins it completes.

    Arrivals live in the state field ``join.<name>`` (the sources, in fold order), so a join
    is restored and replayed with the state, and a redelivered step, dropped before the fold,
    is never counted twice. A join fires exactly once: on its ``count``-th arrival.
    """
    completed: list[JoinSpec] = []
    for join in spec.joins_on(step.type):
        arrivals = [*fields.get(join.field, []), step.source]
        fields[join.field] = arrivals
        writes[join.field] = FieldWrite(version=version, agent=step.source)
        if len(arrivals) == join.count:
            completed.append(join)
    return completed


def carried_over(fields: dict[str, Any]) -> dict[str, Any]:
    """The state a continuation of a halted trace starts from: everything but the input (it
    is the task's) and the join arrivals (``join.<name>``), which belong to the halted run.
    Scratch fields are already gone from a finished trace's snapshot (see ``finish``)."""
    return {k: v for k, v in fields.items() if k != "input" and not k.startswith(JOIN_FIELD_PREFIX)}


def check_size(
    spec: MeshSpec, snapshot: Snapshot, measure: Callable[[Snapshot], int] = encoded_size
) -> None:
    """Refuse a snapshot over the mesh's limit: it would clog the state topic and every event."""
    size = measure(snapshot)
    if size > spec.max_snapshot_bytes:
        raise FoldError(
            f"snapshot would be {size} bytes, over the mesh's max_snapshot_bytes "
            f"({spec.max_snapshot_bytes}); keep large data out of the state, or "
            "mark per-step fields as scratch and keep a running summary"
        )


def shift_persona(snapshot: Snapshot, step: Envelope, at: datetime) -> Snapshot:
    """A new version with ``step``'s persona override for its agent in this trace.

    Not a step: the totals stay, so a verdict never counts against the trace's budgets, but
    the version moves on and the record is marked applied, so replay and dedupe see it.
    """
    agent = str(step.payload["agent"])
    persona = msgspec.convert(step.payload["persona"], Persona)
    return msgspec.structs.replace(
        snapshot,
        version=snapshot.version + 1,
        applied=[*snapshot.applied, step.event_id],
        personas={**snapshot.personas, agent: persona},
        updated_at=at,
    )


def charge(snapshot: Snapshot, step: Envelope, at: datetime) -> Snapshot:
    """A new version that records the step as applied, releases its reservation and counts
    its usage, state unchanged."""
    return msgspec.structs.replace(
        budget.release(snapshot, step),
        version=snapshot.version + 1,
        applied=[*snapshot.applied, step.event_id],
        totals=add_usage(snapshot.totals, step),
        updated_at=at,
    )


def mark_applied(snapshot: Snapshot, step: Envelope, at: datetime) -> Snapshot:
    """A new version that records a decision (``trace.halt``, the sweep's ``trace.expire``)
    as applied: not a step, so the totals, the hop count and the per-agent figures do not
    move."""
    return msgspec.structs.replace(
        snapshot,
        version=snapshot.version + 1,
        applied=[*snapshot.applied, step.event_id],
        updated_at=at,
    )


def add_usage(totals: Totals, step: Envelope) -> Totals:
    """Running totals after one more step, overall and per agent: each counted exactly once.

    A refusal (``step.refused``) ran nothing: its usage (a model call cut short) is counted,
    but it is not a hop, so a trace's ``hops`` never passes its hop budget.
    """
    usage = step.usage
    hop = 0 if step.type == STEP_REFUSED else 1
    mine = totals.by_agent.get(step.source, AgentTotals())
    by_agent = {
        **totals.by_agent,
        step.source: AgentTotals(
            steps=mine.steps + hop,
            calls=mine.calls + usage.calls,
            tokens_in=mine.tokens_in + usage.tokens_in,
            tokens_out=mine.tokens_out + usage.tokens_out,
            cost=round(mine.cost + usage.cost, 12),
        ),
    }
    return Totals(
        tokens_in=totals.tokens_in + usage.tokens_in,
        tokens_out=totals.tokens_out + usage.tokens_out,
        cost=round(totals.cost + usage.cost, 12),
        hops=totals.hops + hop,
        by_agent=by_agent,
    )


def finish(
    spec: MeshSpec, snapshot: Snapshot, status: str, reason: str | None, output: Any, at: datetime
) -> tuple[Snapshot, TerminalResult]:
    """Close a trace: drop per-step scratch fields and build its one terminal record.

    What stays is the durable state: by convention a ``summary`` field that agents keep
    current (a ``replace`` field), so a finished trace's snapshot is small and still says
    what happened.
    """
    fields = {k: v for k, v in snapshot.fields.items() if not spec.field(k).scratch}
    closed = msgspec.structs.replace(
        snapshot, status=status, reason=reason, fields=fields, updated_at=at
    )
    result = TerminalResult(
        trace_id=snapshot.trace_id,
        status=status,  # type: ignore[arg-type]
        output=output,
        reason=reason,
        state_version=snapshot.version,
        usage=snapshot.totals,
        parent_trace_id=snapshot.parent_trace_id,
        finished_at=at,
    )
    return closed, result
