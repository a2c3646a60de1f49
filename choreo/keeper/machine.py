"""The keeper's state machine: admits tasks, folds steps, applies verdicts, sweeps deadlines.

``Keeper`` holds the traces of the partitions its service owns and turns one consumed record
into the records it causes, queued on a ``choreo.keeper.batch.Batch``: it does no Kafka I/O,
so the live keeper (``choreo.keeper.service``) and a replay of the outbox
(``choreo.keeper.replay``) run the very same transitions. Every timestamp it writes comes
from the log, never from the clock (``record_time``), so replay equals live.

Every trace ends: a record whose handling fails (a bug, an odd record, an output over the
record limit of choreo.kafka.limits) has its output rolled back, ends its trace ``failed``
with the reason and is dead-lettered; a trace past its deadline is ended by the sweep
(``Keeper.sweep``). docs/ARCHITECTURE.md, "Liveness and size", lists the guarantees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka.structs import ConsumerRecord

from choreo.budget import reserve as budget
from choreo.kafka.clients import headers_of, key_of, partition_for
from choreo.kafka.limits import RecordTooLarge
from choreo.keeper import digest as digests
from choreo.keeper import fold as transitions
from choreo.keeper.applied import AppliedIds
from choreo.keeper.batch import Batch, Keys, Logged
from choreo.keeper.blobs import DEFAULT_BLOB_BYTES, Blobs
from choreo.keeper.digest import StateDigest
from choreo.keeper.fold import EXPIRE, TASK_SOURCE, FoldError
from choreo.observe import metrics
from choreo.observe.telemetry import Headers
from choreo.schemas import (
    Budget,
    ControlVerdict,
    DecodeError,
    Envelope,
    HopRecord,
    Snapshot,
    Task,
    TerminalResult,
    decode,
)
from choreo.schemas.blobs import Held, refs_in
from choreo.schemas.deltas import StateLog, fold_deltas
from choreo.schemas.ids import derive_event_id, task_trace_id
from choreo.schemas.records import (
    ADMIT,
    FAIL,
    FINISH,
    HALT,
    PERSONA,
    STEP_FAILED,
    STEP_REFUSED,
    Persona,
)
from choreo.schemas.topics import Topics
from choreo.spec.mesh import JoinSpec, MeshSpec

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 4096


def record_time(record: ConsumerRecord[bytes, bytes]) -> datetime:
    """The log's own timestamp, so replays reproduce the live timestamps exactly."""
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


#: The rule of the wall-clock budget: one ending whoever sees the deadline pass first.
WALL_CLOCK = "budget.wall_clock"


def past_deadline(limits: Budget, at: datetime) -> bool:
    """True when ``at`` is at or after the trace's deadline: a step refused or failed then
    ends the trace as the deadline sweep and the watchdog do, ``halted`` by ``WALL_CLOCK``
    with one escalation (docs/WATCHDOG.md, "One ending per budget")."""
    return limits.deadline is not None and at >= limits.deadline


def wall_clock_evidence(limits: Budget, at: datetime) -> dict[str, Any]:
    """The escalation's evidence for a trace ended by its deadline, as the watchdog gives it."""
    deadline = limits.deadline.isoformat() if limits.deadline else None
    return {"rule": WALL_CLOCK, "wall_clock": {"at": at.isoformat(), "deadline": deadline}}


def change_time(logged_at: datetime, snapshot: Snapshot) -> datetime:
    """When a record logged at ``logged_at`` (``record_time``) changes ``snapshot``: its log
    timestamp, but never before the trace's last change. An outbox partition is written by
    several producers (agents, the keeper), each stamping its own send time, so log order and
    timestamp order can differ by a few ms; a trace's times follow its log order (a halt never
    ends it before a step it folded), and replays reproduce them, since both depend on the
    log alone."""
    return max(logged_at, snapshot.updated_at)


#: What the keeper does with one consumed record: a dead-letter reason, or None.
Handler = Callable[[ConsumerRecord[bytes, bytes], Batch], str | None]


class Keeper:
    """In-memory traces of the owned partitions, and the transitions that change them.

    Tasks and verdicts are not applied where they arrive: the keeper turns each into an
    outbox record (``trace.admit``, ``trace.halt``, ``trace.persona``) keyed by the trace id,
    and applies it when it reads it back. So the outbox alone holds every transition in the
    order it happened, on the trace's own partition, and replaying it rebuilds every trace
    exactly. A new trace's admission is the one exception, applied as it is logged when the
    task arrived on its trace's own partition (see ``intake``).
    """

    def __init__(
        self, spec: MeshSpec, topics: Topics, blob_bytes: int = DEFAULT_BLOB_BYTES
    ) -> None:
        self.spec = spec
        self.topics = topics
        #: Values over ``blob_bytes`` go by reference (choreo.keeper.blobs).
        self.blobs = Blobs(topics.blobs, blob_bytes)
        self.traces: dict[str, Snapshot] = {}
        #: Traces whose terminal record is already on the results topic (see mark_finished).
        self.finished: set[str] = set()
        #: What each running trace last waited for (event types sent, by whom they are read),
        #: for the deadline sweep's reason; lost on a restart, where the reason says less.
        self.waiting: dict[str, str] = {}
        #: The agents that run a step for each event type (a type only joins wait for has none).
        self._subscribers: dict[str, list[str]] = {}
        #: Partitions of the keeper's topics; 0 while unknown (admissions are then read back).
        self.partitions = 0
        #: The ids each trace applied, for dedupe in O(1) (choreo.keeper.applied).
        self.applied = AppliedIds()
        #: What the state log holds of each running trace: its records are deltas from it.
        self.logged: dict[str, Logged] = {}
        #: Each running trace's field digests, so a hop record costs O(the step's delta).
        self.digests: dict[str, StateDigest] = {}
        self._reads = {agent.name: agent.reads for agent in spec.agents}
        for agent in spec.agents:
            for event_type in agent.subscribe:
                self._subscribers.setdefault(event_type, []).append(agent.name)
        self._carried = {
            t: carried_fields(spec, readers) for t, readers in self._subscribers.items()
        }

    # -- one record, all or nothing -----------------------------------------------------

    def handle(
        self, handler: Handler, record: ConsumerRecord[bytes, bytes], batch: Batch
    ) -> str | None:
        """Run ``handler`` on one record; whatever it raises never leaves half its output.

        What the record queued is rolled back and the trace (if it is known and running)
        ends ``failed`` with the reason, so no trace waits for a record that was lost here;
        the reason is also returned, for the dead-letter topic.
        """
        trace_id = key_of(record, strict=False) or ""
        return self._all_or_nothing(
            trace_id,
            record.topic,
            batch,
            lambda: handler(record, batch),
            lambda reason: self._end_on_error(trace_id, record, reason, batch),
        )

    def _all_or_nothing(
        self,
        trace_id: str,
        topic: str,
        batch: Batch,
        transition: Callable[[], str | None],
        end: Callable[[str], None],
    ) -> str | None:
        """Run ``transition`` of ``trace_id``; if it raises, roll back what it queued and
        changed, ``end`` the trace with the reason, and return that reason."""
        mark, before = batch.mark(trace_id), self.traces.get(trace_id)
        try:
            return transition()
        except Exception as exc:  # a bug or an odd record must not wedge the partition
            batch.rollback(trace_id, mark)
            if before is None:
                self.traces.pop(trace_id, None)
            else:
                self.traces[trace_id] = before
            if not isinstance(exc, RecordTooLarge):
                log.exception(
                    "keeper failed on a record", extra={"topic": topic, "trace_id": trace_id}
                )
            reason = (
                str(exc)
                if isinstance(exc, RecordTooLarge)
                else f"keeper error: {type(exc).__name__}: {exc}"
            )
            end(reason)
            return reason

    def _end_on_error(
        self, trace_id: str, record: ConsumerRecord[bytes, bytes], reason: str, batch: Batch
    ) -> None:
        """End ``trace_id`` ``failed`` because of ``record``; a trace it admits is admitted
        for that (its input cut if need be), so it still gets its one terminal record."""
        if record.topic == self.topics.tasks:
            return  # the task's admission is only logged here; its outbox record ends it
        step = _envelope_or_none(record)
        if step is None or step.trace_id != trace_id:
            return
        if step.type == ADMIT:
            self._fail_admission(step, reason, batch)
            return
        snapshot = self.traces.get(trace_id)
        if (
            snapshot is None
            or snapshot.status != "running"
            or self.applied.has(snapshot, step.event_id)
        ):
            return
        at = change_time(record_time(record), snapshot)
        self._end_failed(snapshot, reason, batch, charged=(step, at))

    def _fail_admission(self, admit: Envelope, reason: str, batch: Batch) -> None:
        """End the trace ``admit`` logs ``failed``; a new one is admitted for that, its input
        and initial state cut (they may be what failed)."""
        snapshot = self.traces.get(admit.trace_id)
        if snapshot is None:
            snapshot = self._admitted(admit, admit.created_at, cut=True)
        elif snapshot.status != "running" or self.applied.has(snapshot, admit.event_id):
            return
        self._end_failed(snapshot, reason, batch)

    def _end_failed(
        self,
        snapshot: Snapshot,
        reason: str,
        batch: Batch,
        charged: tuple[Envelope, datetime] | None = None,
    ) -> None:
        """End ``snapshot``'s trace ``failed``; ``charged``, a step and when it changes the
        trace, is counted first and gets its hop record. When even that cannot be written,
        nothing is queued and the deadline sweep ends the trace."""
        trace_id = snapshot.trace_id
        mark = batch.mark(trace_id)
        try:
            if charged is not None:
                step, at = charged
                snapshot = transitions.charge(snapshot, step, at)
                self._hop(step, snapshot, "failed", batch, reason=reason)
            self._finish(snapshot, "failed", reason, None, batch)
        except Exception:
            batch.rollback(trace_id, mark)
            log.exception("could not end the trace", extra={"trace_id": trace_id})

    # -- intake: tasks and verdicts become outbox records --------------------------------

    def intake(self, record: ConsumerRecord[bytes, bytes], batch: Batch) -> str | None:
        """Validate a task and log its admission; return a dead-letter reason if invalid.

        A key that is not UTF-8 is refused: the trace would run under other bytes than the
        producer used, and its result would never be found under the producer's key. A task
        whose admission record would be over the record limit is admitted with its input
        cut, and its admission fails the trace with that reason (see ``_admit``).

        The admission is timed by the task record's own timestamp, so a task read again
        after a crash logs the very same record. When the task arrived on its trace's own
        partition and the trace is new, the admission is also applied at once, and logged
        ahead of everything it causes (``Batch.log_first``): no record of the trace can
        precede it in the outbox, so applying it now or on reading it back is the same
        transition, and the step saves a round trip through the broker. Read back later, it
        is a repeat and changes nothing.
        """
        try:
            key = key_of(record, strict=True)
        except UnicodeDecodeError as exc:
            return f"the record key is not UTF-8 ({exc.reason} at byte {exc.start})"
        try:
            task = decode(record.value or b"", Task)
        except DecodeError as exc:
            return str(exc)
        trace_id = (
            task.trace_id or key or task_trace_id(record.topic, record.partition, record.offset)
        )
        origin = f"{record.topic}/{record.partition}/{record.offset}"
        admit = Envelope(
            event_id=derive_event_id(origin, TASK_SOURCE),
            trace_id=trace_id,
            type=ADMIT,
            source=TASK_SOURCE,
            payload={"task": msgspec.to_builtins(task), "origin": origin},
            created_at=record_time(record),
        )
        at_once = (
            trace_id not in self.traces
            and self.partitions > 0
            and partition_for(trace_id, self.partitions) == record.partition
        )
        log_admit = batch.log_first if at_once else batch.send
        try:
            logged = log_admit(self.topics.outbox, trace_id, admit, headers_of(record))
        except RecordTooLarge as exc:
            cut = msgspec.structs.replace(task, input="", initial_state=None, metadata={})
            admit.payload = {
                "task": msgspec.to_builtins(cut),
                "origin": origin,
                "refused": f"task too large to admit: {exc}",
            }
            logged = log_admit(self.topics.outbox, trace_id, admit, headers_of(record))
        if not at_once:
            return None
        # Applied as ``apply`` will read it back (the logged bytes, the headers they carry):
        # its own failure ends the trace, and dead-letters the task.
        _, _, value, headers = logged
        admitted = decode(value, Envelope)
        return self._all_or_nothing(
            trace_id,
            self.topics.outbox,
            batch,
            lambda: self._admit(admitted, headers, batch),
            lambda reason: self._fail_admission(admitted, reason, batch),
        )

    def control(self, record: ConsumerRecord[bytes, bytes], batch: Batch) -> str | None:
        """Log a verdict (halt, persona shift) as the trace's next transition."""
        try:
            verdict = decode(record.value or b"", ControlVerdict)
        except DecodeError as exc:
            return str(exc)
        payload: dict[str, Any] = {
            "reason": verdict.reason,
            "verdict_id": verdict.verdict_id,
            "evidence": verdict.evidence,
            "agent": verdict.agent,
        }
        if verdict.action == "persona_shift":
            if not verdict.agent:
                return f"persona_shift verdict {verdict.verdict_id} names no agent"
            payload |= {
                "agent": verdict.agent,
                "persona": msgspec.to_builtins(
                    Persona(
                        temperature=verdict.temperature,
                        system_prompt=verdict.system_prompt,
                        reason=verdict.reason,
                    )
                ),
            }
        batch.send(
            self.topics.outbox,
            verdict.trace_id,
            Envelope(
                event_id=derive_event_id(verdict.verdict_id, "control"),
                trace_id=verdict.trace_id,
                type=HALT if verdict.action == "halt" else PERSONA,
                source=verdict.source,
                payload=payload,
            ),
        )
        return None

    # -- apply: the outbox, in order ------------------------------------------------------

    def apply(self, record: ConsumerRecord[bytes, bytes], batch: Batch) -> str | None:
        """Apply one outbox record; return a dead-letter reason when it is unusable."""
        try:
            step = decode(record.value or b"", Envelope)
        except DecodeError as exc:
            return str(exc)
        if step.type == ADMIT:
            return self._admit(step, headers_of(record), batch)
        snapshot = self.traces.get(step.trace_id)
        if snapshot is None:
            return f"step {step.event_id} belongs to unknown trace {step.trace_id!r}"
        if snapshot.status != "running":
            metrics.FOLDS.labels(outcome="after_finish").inc()
            return None
        if self.applied.has(snapshot, step.event_id):
            metrics.FOLDS.labels(outcome="duplicate").inc()
            return None
        at = change_time(record_time(record), snapshot)
        if step.type == HALT:  # a verdict, not a step: no hop, no usage
            halted = transitions.mark_applied(snapshot, step, at)
            self._finish(
                halted,
                "halted",
                str(step.payload.get("reason")),
                None,
                batch,
                evidence={
                    "source": step.source,
                    "verdict_id": step.payload.get("verdict_id"),
                    **(step.payload.get("evidence") or {}),
                },
            )
            return None
        if step.type == EXPIRE:
            self._finish(
                transitions.mark_applied(snapshot, step, at),
                "halted",
                f"{WALL_CLOCK}: {step.payload.get('reason')}",
                None,
                batch,
                evidence={"source": "keeper", **wall_clock_evidence(snapshot.budget, at)},
            )
            return None
        if step.type == PERSONA:
            self._store(transitions.shift_persona(snapshot, step, at), batch)
            return None
        # what the step read, hashed before the fold moves the trace's digests on
        situation = digests.situation(
            self._digest(step.trace_id).of(snapshot.fields), self._reads.get(step.source)
        )
        try:
            folded = transitions.fold(self.spec, snapshot, step, at, self._measure)
        except FoldError as exc:
            failed = transitions.charge(snapshot, step, at)
            self._hop(step, failed, "failed", batch)
            self._finish(failed, "failed", f"step {step.source}#{step.hop}: {exc}", None, batch)
            return f"step not folded, trace failed: {exc}"
        new = folded.snapshot
        for conflict in folded.conflicts:
            batch.send(self.topics.conflicts, step.trace_id, conflict)
            metrics.CONFLICTS.labels(field=conflict.field, policy=conflict.policy).inc()
        status = (
            "refused"
            if step.type == STEP_REFUSED
            else "failed"
            if step.type == STEP_FAILED or folded.rejected
            else "ok"
        )
        self._hop(
            step,
            new,
            status,
            batch,
            conflicts=len(folded.conflicts),
            situation=situation,
        )
        metrics.FOLDS.labels(outcome="rejected" if folded.rejected else "applied").inc()
        reason = str(step.payload.get("reason") or step.type)
        if (exhausted := budget.over(new.budget, new.totals)) is not None:
            # spent over a limit anyway (a model that ignored max_tokens): never "completed"
            self._finish(
                new,
                "halted",
                exhausted.reason,
                None,
                batch,
                evidence={"agent": step.source, "hop": step.hop, **msgspec.to_builtins(exhausted)},
            )
        elif step.type in (STEP_REFUSED, STEP_FAILED) and past_deadline(new.budget, at):
            # the deadline sweep's outcome, whoever saw the deadline first (docs/WATCHDOG.md)
            self._finish(
                new,
                "halted",
                f"{WALL_CLOCK}: {reason}",
                None,
                batch,
                evidence={
                    "agent": step.source,
                    "hop": step.hop,
                    **wall_clock_evidence(new.budget, at),
                },
            )
        elif step.type == STEP_REFUSED:
            self._finish(
                new,
                "halted",
                reason,
                None,
                batch,
                evidence={
                    "agent": step.source,
                    "hop": step.hop,
                    "rule": "agent.refused",
                    **step.payload.get("budget", {}),
                },
            )
        elif step.type in (STEP_FAILED, FAIL):
            self._finish(new, "failed", reason, None, batch)
        elif folded.rejected:
            fields = ", ".join(c.field for c in folded.conflicts)
            self._finish(new, "failed", f"conflicting write rejected on {fields}", None, batch)
        elif step.type == FINISH:
            self._finish(new, "completed", None, self._output(new, step), batch)
        else:
            forwards = [
                msgspec.structs.replace(
                    step,
                    state=new.fields,
                    state_version=new.version,
                    delta=None,
                    personas=new.personas,
                    totals=new.totals,
                )
            ]
            forwards += [self._join(join, step, new) for join in folded.joined]
            self._await(step.trace_id, [e.type for e in forwards if e.type in self._subscribers])
            self._forward(new, forwards, batch, headers_of(record))
        return None

    # -- budgets held before spending (see choreo.budget.reserve) ------------------------

    def _forward(
        self, snapshot: Snapshot, events: list[Envelope], batch: Batch, headers: Headers
    ) -> None:
        """Reserve the steps ``events`` start and send each with its allowance, or, when the
        budget cannot pay for them, send none and halt the trace with the figures."""
        sends = []
        for event in events:
            allotted = budget.allot(snapshot, event.event_id, self._subscribers.get(event.type, []))
            if isinstance(allotted, budget.Exhausted):
                self._finish(
                    snapshot,
                    "halted",
                    allotted.reason,
                    None,
                    batch,
                    evidence={"hop": event.hop, **msgspec.to_builtins(allotted)},
                )
                return
            snapshot, allowance = allotted
            if event.type in self._subscribers:  # a type only joins wait for has no topic
                sends.append(
                    msgspec.structs.replace(
                        event, allowance=allowance, state=self._carried_state(event)
                    )
                )
        self._store(snapshot, batch)
        for event in sends:
            batch.send(self.topics.event(event.type), event.trace_id, event, headers)

    def _carried_state(self, event: Envelope) -> dict[str, Any] | None:
        """What of the state ``event`` carries: what its readers declare (``carried_fields``)."""
        names = self._carried.get(event.type)
        if names is None or event.state is None:
            return event.state
        return {name: event.state[name] for name in names if name in event.state}

    def _join(self, join: JoinSpec, cause: Envelope, snapshot: Snapshot) -> Envelope:
        """The one event of a completed join; its id derives from the step that completed it."""
        return Envelope(
            event_id=derive_event_id(cause.event_id, join.field),
            trace_id=cause.trace_id,
            causation_id=cause.event_id,
            type=join.emit,
            source=join.field,
            hop=cause.hop,
            budget=snapshot.budget,
            state_version=snapshot.version,
            state=snapshot.fields,
            personas=snapshot.personas,
            totals=snapshot.totals,
            payload={"join": join.name, "arrivals": snapshot.fields[join.field]},
            created_at=snapshot.updated_at,
        )

    def _admit(self, admit: Envelope, headers: Headers, batch: Batch) -> str | None:
        """Create the trace ``admit`` logs and send its entry events (with ``headers``, the
        admission record's); a dead-letter reason when its trace id is taken."""
        existing = self.traces.get(admit.trace_id)
        if existing is not None:
            if self.applied.has(existing, admit.event_id):
                return None  # the same task, redelivered
            return f"trace id {admit.trace_id!r} was already admitted (from {existing.origin})"
        at = admit.created_at
        snapshot = self._admitted(admit, at, cut=False)
        metrics.TRACES_ADMITTED.inc()
        metrics.TRACES_IN_FLIGHT.inc()
        refused = admit.payload.get("refused")
        if refused:
            self._finish(snapshot, "failed", str(refused), None, batch)
            return None
        entries = [
            Envelope(
                event_id=derive_event_id(admit.event_id, TASK_SOURCE, index),
                trace_id=admit.trace_id,
                causation_id=admit.event_id,
                type=event_type,
                source=TASK_SOURCE,
                hop=0,
                budget=snapshot.budget,
                state_version=snapshot.version,
                state=snapshot.fields,
                totals=snapshot.totals,
                created_at=at,
            )
            for index, event_type in enumerate(self.spec.entry)
        ]
        self._await(admit.trace_id, self.spec.entry)
        self._forward(snapshot, entries, batch, headers)
        return None

    def _admitted(self, admit: Envelope, at: datetime, *, cut: bool) -> Snapshot:
        """Version 1 of the trace ``admit`` logs; with ``cut``, without its input and initial
        state (it is being failed because they are too large to carry)."""
        task = msgspec.convert(admit.payload["task"], Task)
        if cut:
            task = msgspec.structs.replace(task, input="", initial_state=None, metadata={})
        snapshot = transitions.admit(
            self.spec, task, admit.trace_id, str(admit.payload["origin"]), at
        )
        snapshot.applied.append(admit.event_id)
        self.traces[snapshot.trace_id] = snapshot
        log.info(
            "trace admitted", extra={"trace_id": admit.trace_id, "origin": admit.payload["origin"]}
        )
        return snapshot

    def _await(self, trace_id: str, event_types: Iterable[str]) -> None:
        """Note what the trace now waits for: the deadline sweep names it if it never comes."""
        self.waiting[trace_id] = "; ".join(
            f"{t} (read by {', '.join(self._subscribers.get(t, [])) or 'no agent'})"
            for t in event_types
        )

    # -- liveness: traces past their deadline ---------------------------------------------

    def sweep(self, now: datetime, batch: Batch) -> int:
        """Log the end of every running trace past its deadline; return how many.

        The decision is an outbox record (``trace.expire``, id derived from the trace id) and
        is applied when read back, like a halt: the trace's end then has the outbox record's
        timestamp, so restarts and replays end it exactly as the live keeper did, and a
        sweep repeated before that record is read back writes the same id, applied once.
        """
        count = 0
        for snapshot in list(self.traces.values()):
            deadline = snapshot.budget.deadline
            if (
                snapshot.status != "running"
                or deadline is None
                or deadline > now
                or snapshot.trace_id in self.finished
            ):
                continue
            waiting = self.waiting.get(snapshot.trace_id) or (
                f"the step after version {snapshot.version} (not known since a restart)"
            )
            batch.send(
                self.topics.outbox,
                snapshot.trace_id,
                Envelope(
                    event_id=derive_event_id(snapshot.trace_id, EXPIRE),
                    trace_id=snapshot.trace_id,
                    type=EXPIRE,
                    source="keeper",
                    state_version=snapshot.version,
                    payload={
                        "reason": f"deadline {deadline.isoformat()} passed while waiting for "
                        f"{waiting}",
                        "deadline": deadline.isoformat(),
                    },
                    created_at=now,
                ),
            )
            count += 1
        return count

    # -- outputs ------------------------------------------------------------------------

    def _store(self, snapshot: Snapshot, batch: Batch) -> None:
        trace_id = snapshot.trace_id
        self.traces[trace_id] = batch.store(snapshot, self.logged.get(trace_id))

    def _finish(
        self,
        snapshot: Snapshot,
        status: str,
        reason: str | None,
        output: Any,
        batch: Batch,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        closed, result = transitions.finish(
            self.spec, snapshot, status, reason, output, snapshot.updated_at
        )
        self._store(closed, batch)
        self.waiting.pop(snapshot.trace_id, None)
        if snapshot.trace_id in self.finished:
            return  # written before a crash: the state is rebuilt, the record is not repeated
        batch.send_last(self.topics.results, snapshot.trace_id, result)
        self.finished.add(snapshot.trace_id)
        log.info(
            "trace ended",
            extra={
                "trace_id": snapshot.trace_id,
                "status": status,
                "reason": reason,
                "version": closed.version,
            },
        )
        if status == "halted":  # the one escalation of the trace, whoever halted it
            batch.send(
                self.topics.escalations,
                snapshot.trace_id,
                transitions.escalation(
                    closed, reason or status, evidence or {}, snapshot.updated_at
                ),
            )
        metrics.TRACES_FINISHED.labels(status=status).inc()
        metrics.TRACES_IN_FLIGHT.dec()

    def _hop(
        self,
        step: Envelope,
        snapshot: Snapshot,
        status: str,
        batch: Batch,
        conflicts: int = 0,
        reason: str | None = None,
        situation: str = "",
    ) -> None:
        fields = self._digest(step.trace_id).update(snapshot.fields)
        batch.send(
            self.topics.hops,
            step.trace_id,
            HopRecord(
                trace_id=step.trace_id,
                event_id=step.event_id,
                causation_id=step.causation_id,
                agent=step.source,
                hop=step.hop,
                type=step.type,
                status=status,  # type: ignore[arg-type]
                state_version=snapshot.version,
                state_hash=digests.state_hash(fields),
                input_fingerprint=str(step.payload.get("input_fingerprint", "")),
                output=str(step.payload.get("text", ""))[:OUTPUT_LIMIT],
                duration_ms=float(step.payload.get("duration_ms", 0.0)),
                usage=step.usage,
                totals=snapshot.totals,
                conflicts=conflicts,
                created_at=snapshot.updated_at,
                extensions=transitions.extensions(step, reason),
                # what the watchdog's progress-aware rules compare (choreo.keeper.digest)
                field_hashes=digests.field_hashes(fields),
                situation=situation,
                tool_calls=transitions.tool_calls(step),
                read_version=step.state_version,
            ),
        )

    def _digest(self, trace_id: str) -> StateDigest:
        return self.digests.setdefault(trace_id, StateDigest())

    def _measure(self, snapshot: Snapshot) -> int:
        """``snapshot``'s encoded size, its fields measured from their digests and its applied
        ids from their index: the rest is encoded (``fields`` ``{}``, ``applied`` ``[]``), their
        JSON added in place."""
        fields = self._digest(snapshot.trace_id).update(snapshot.fields)
        rest = msgspec.structs.replace(snapshot, fields={}, applied=[])
        applied = self.applied.encoded_size(snapshot)
        return transitions.encoded_size(rest) - 4 + digests.fields_size(fields) + applied

    @staticmethod
    def _output(snapshot: Snapshot, step: Envelope) -> Any:
        field_name = step.payload.get("output_field")
        if field_name:
            return snapshot.fields.get(field_name)
        return step.payload.get("output", step.payload.get("text"))

    # -- recovery -----------------------------------------------------------------------

    def restore(self, snapshot: Snapshot, logged: Logged | None = None) -> None:
        """Take back a trace from the state topic: its state (``snapshot``), and what the
        log holds of it (``logged``; None: the trace's next version is logged whole). An
        older version than the one held is ignored."""
        current = self.traces.get(snapshot.trace_id)
        if current is None or snapshot.version >= current.version:
            self.traces[snapshot.trace_id] = tombstone(snapshot)
            if logged is not None and snapshot.status == "running":
                self.logged[snapshot.trace_id] = logged
            else:
                self.logged.pop(snapshot.trace_id, None)

    def restore_log(self, log: StateLog) -> None:
        """Take back every trace of a state topic's partitions, read whole into ``log``."""
        for tail in log.tails.values():
            if tail.snapshot is None:
                continue
            chain = tail.chain()
            state = fold_deltas(tail.snapshot, (delta for delta, _ in chain))
            logged = Logged(
                state,
                due_bytes=tail.snapshot_bytes,
                since_bytes=sum(size for _, size in chain),
                delta_keys=Keys.of(sorted(tail.live_keys)),
            )
            self.restore(state, logged)

    def refs(self) -> Iterator[tuple[str, str, Held]]:
        """Each field of a running trace that holds a reference (as restored from the state
        log), as (trace id, field, reference); see :meth:`resolve`."""
        for trace_id, snapshot in self.traces.items():
            if snapshot.status == "running":
                for name, ref in refs_in(snapshot.fields):
                    yield trace_id, name, ref

    def resolve(self, trace_id: str, values: dict[str, tuple[Any, Held]]) -> None:
        """Put the fetched ``values`` (by field: the value and the reference it was read
        through) in place of ``trace_id``'s references, in its state and in what the log holds
        of it, so its next delta is taken from values."""
        snapshot = self.traces[trace_id]
        fields = {**snapshot.fields, **{name: value for name, (value, _) in values.items()}}
        resolved = msgspec.structs.replace(snapshot, fields=fields)
        self.traces[trace_id] = resolved
        if trace_id in self.logged:
            self.logged[trace_id].snapshot = resolved
        for name, (value, held) in values.items():
            self.blobs.known(trace_id, name, value, held)

    def written(self, batch: Batch) -> None:
        """Note what the state log holds once ``batch``'s state records are written: the
        next versions of its traces are logged as deltas from there."""
        self.logged.update(batch.logged())

    def settle(self, batch: Batch) -> None:
        """Note what the state log holds once ``batch``'s state records are acknowledged, and
        shrink the traces that have ended.

        A long-running keeper sees every trace of its partitions end; keeping each one's
        whole state would grow without bound. What it still needs of an ended trace is that
        it ended (later steps are dropped) and which admissions it applied (a redelivered
        task is recognised); the full final state lives on the state topic.
        """
        self.written(batch)
        for trace_id in batch.snapshots:
            snapshot = self.traces.get(trace_id)
            if snapshot is not None:
                self.traces[trace_id] = tombstone(snapshot)
                if snapshot.status != "running":
                    self.digests.pop(trace_id, None)
                    self.logged.pop(trace_id, None)
                    self.applied.forget(trace_id)
                    self.blobs.forget(trace_id)

    def forget(self, trace_id: str) -> None:
        """Drop everything held of ``trace_id`` (its partition went to another keeper)."""
        self.traces.pop(trace_id, None)
        self.finished.discard(trace_id)
        self.waiting.pop(trace_id, None)
        self.logged.pop(trace_id, None)
        self.digests.pop(trace_id, None)
        self.applied.forget(trace_id)
        self.blobs.forget(trace_id)

    def mark_finished(self, result: TerminalResult) -> None:
        """A terminal record already exists: never write a second one for this trace.

        The trace's state is not touched: if its final snapshot was lost in a crash, the
        outbox records re-read after the committed offset finish it again, exactly as before,
        and only the terminal record is left out.
        """
        self.finished.add(result.trace_id)


def carried_fields(spec: MeshSpec, readers: list[str]) -> frozenset[str] | None:
    """The state fields an event read by the agents ``readers`` carries: the union of their
    ``reads`` (and ``input``) when every one is a Python agent that declares them, else
    ``None``, every field. A model agent keeps every field: its context, routes and tools
    name fields of their own (docs/AGENTS.md)."""
    agents = [a for a in spec.agents if a.name in readers]
    if any(a.kind != "python" or a.reads is None for a in agents):
        return None
    return frozenset({"input", *(name for a in agents for name in a.reads or ())})


def _envelope_or_none(record: ConsumerRecord[bytes, bytes]) -> Envelope | None:
    try:
        return decode(record.value or b"", Envelope)
    except DecodeError:
        return None


def tombstone(snapshot: Snapshot) -> Snapshot:
    """An ended trace without its state: enough to drop its later steps and repeat tasks."""
    if snapshot.status == "running":
        return snapshot
    return msgspec.structs.replace(snapshot, fields={}, writes={}, personas={})
