"""The keeper service: admits tasks, folds steps, forwards events, ends traces exactly once.

One consumer group reads tasks, the outbox and control verdicts. All topics share a partition
count and the trace id is the key everywhere, so the keeper that owns partition *p* owns every
trace on it: it is the single writer of those traces' state, and no two writers ever race.

Per batch the keeper produces the admissions it applied as it logged them (if any) and waits
for their acks, then the forwards, hop records, results and conflicts, and waits, then the
touched traces' snapshots, waits again, and only then commits. On
Apache Kafka (choreo.kafka.transactions) each partition's share of a batch is instead one
transaction: its outputs, snapshots, dead letters and input offsets, all or nothing. After a
crash it restores each partition from the latest snapshots plus the results already written,
and re-reads the outbox from the committed offset; the event ids in each snapshot make that
re-read idempotent. A broker error takes the same path without a restart.

Every trace ends: a record whose handling fails (a bug, an odd record, an output over the
record limit of choreo.kafka.limits) has its output rolled back, ends its trace
``failed`` with the reason and is dead-lettered; a trace past its deadline is ended by the
sweep (``Keeper.sweep``). docs/ARCHITECTURE.md, "Liveness and size", lists the guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import StatusCode

from choreo.budget import reserve as budget
from choreo.kafka.clients import (
    DeadLetters,
    Headers,
    Outage,
    acked,
    headers_of,
    key_of,
    make_consumer,
    make_producer,
    partition_for,
    read_to_end,
    transient,
)
from choreo.kafka.limits import HEADROOM, RecordLimit, RecordTooLarge, broker_limit
from choreo.kafka.transactions import Transactions, exactly_once, sends_of
from choreo.keeper import fold as transitions
from choreo.keeper.batch import Batch, Send
from choreo.keeper.fold import EXPIRE, TASK_SOURCE, FoldError, state_hash
from choreo.observe import metrics, telemetry
from choreo.observe.settings import Settings
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


def past_deadline(limits: Budget, at: datetime) -> bool:
    """True when ``at`` is at or after the trace's deadline: a step refused then ends the
    trace ``failed``, as the deadline sweep would, not ``halted`` for a person to resolve."""
    return limits.deadline is not None and at >= limits.deadline


def change_time(record: ConsumerRecord[bytes, bytes], snapshot: Snapshot) -> datetime:
    """When ``record`` changes ``snapshot``: its log timestamp, but never before the trace's
    last change. An outbox partition is written by several producers (agents, the keeper),
    each stamping its own send time, so log order and timestamp order can differ by a few ms;
    a trace's times follow its log order (a halt never ends it before a step it folded), and
    replays reproduce them, since both depend on the log alone."""
    return max(record_time(record), snapshot.updated_at)


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

    def __init__(self, spec: MeshSpec, topics: Topics) -> None:
        self.spec = spec
        self.topics = topics
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
        for agent in spec.agents:
            for event_type in agent.subscribe:
                self._subscribers.setdefault(event_type, []).append(agent.name)

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
        mark, before = batch.mark(trace_id), self.traces.get(trace_id)
        try:
            return handler(record, batch)
        except Exception as exc:  # a bug or an odd record must not wedge the partition
            batch.rollback(trace_id, mark)
            if before is None:
                self.traces.pop(trace_id, None)
            else:
                self.traces[trace_id] = before
            if not isinstance(exc, RecordTooLarge):
                log.exception(
                    "keeper failed on a record", extra={"topic": record.topic, "trace_id": trace_id}
                )
            reason = (
                str(exc)
                if isinstance(exc, RecordTooLarge)
                else f"keeper error: {type(exc).__name__}: {exc}"
            )
            self._end_on_error(trace_id, record, reason, batch)
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
        snapshot = self.traces.get(trace_id)
        if step.type == ADMIT and snapshot is None:
            at = step.created_at
            snapshot = self._admitted(step, at, cut=True)
        elif snapshot is None or snapshot.status != "running" or step.event_id in snapshot.applied:
            return
        else:
            at = change_time(record, snapshot)
        mark = batch.mark(trace_id)
        try:
            failed = snapshot if step.type == ADMIT else transitions.charge(snapshot, step, at)
            if step.type != ADMIT:
                self._hop(step, failed, "failed", batch, reason=reason)
            self._finish(failed, "failed", reason, None, batch)
        except Exception:  # even the failure cannot be written: the deadline sweep ends it
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
        if at_once:  # as if read back: its own failure ends the trace, and dead-letters the task
            return self.handle(self.apply, _as_read(logged, record.partition), batch)
        return None

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
            return self._admit(step, record, batch)
        snapshot = self.traces.get(step.trace_id)
        if snapshot is None:
            return f"step {step.event_id} belongs to unknown trace {step.trace_id!r}"
        if snapshot.status != "running":
            metrics.FOLDS.labels(outcome="after_finish").inc()
            return None
        if step.event_id in snapshot.applied:
            metrics.FOLDS.labels(outcome="duplicate").inc()
            return None
        at = change_time(record, snapshot)
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
                "failed",
                str(step.payload.get("reason")),
                None,
                batch,
            )
            return None
        if step.type == PERSONA:
            self._store(transitions.shift_persona(snapshot, step, at), batch)
            return None
        try:
            folded = transitions.fold(self.spec, snapshot, step, at)
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
            situation=transitions.situation(self.spec, step.source, snapshot.fields),
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
        elif step.type == STEP_REFUSED and past_deadline(new.budget, at):
            # the deadline sweep's outcome, whoever saw the deadline first (docs/CONTRACT.md)
            self._finish(new, "failed", reason, None, batch)
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
                sends.append(msgspec.structs.replace(event, allowance=allowance))
        self._store(snapshot, batch)
        for event in sends:
            batch.send(self.topics.event(event.type), event.trace_id, event, headers)

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

    def _admit(
        self, admit: Envelope, record: ConsumerRecord[bytes, bytes], batch: Batch
    ) -> str | None:
        existing = self.traces.get(admit.trace_id)
        if existing is not None:
            if admit.event_id in existing.applied:
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
        self._forward(snapshot, entries, batch, headers_of(record))
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
        self.traces[snapshot.trace_id] = batch.store(snapshot)

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
        batch.send(self.topics.results, snapshot.trace_id, result)
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
                state_hash=state_hash(snapshot.fields),
                input_fingerprint=str(step.payload.get("input_fingerprint", "")),
                output=str(step.payload.get("text", ""))[:OUTPUT_LIMIT],
                duration_ms=float(step.payload.get("duration_ms", 0.0)),
                usage=step.usage,
                totals=snapshot.totals,
                conflicts=conflicts,
                created_at=snapshot.updated_at,
                extensions={"reason": reason} if reason else {},
                # what the watchdog's progress-aware rules compare (choreo.keeper.fold)
                field_hashes=transitions.field_hashes(snapshot.fields),
                situation=situation,
                tool_calls=transitions.tool_calls(step),
                read_version=step.state_version,
            ),
        )

    @staticmethod
    def _output(snapshot: Snapshot, step: Envelope) -> Any:
        field_name = step.payload.get("output_field")
        if field_name:
            return snapshot.fields.get(field_name)
        return step.payload.get("output", step.payload.get("text"))

    # -- recovery -----------------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        current = self.traces.get(snapshot.trace_id)
        if current is None or snapshot.version >= current.version:
            self.traces[snapshot.trace_id] = tombstone(snapshot)

    def settle(self, trace_ids: Iterable[str]) -> None:
        """Shrink the traces that have ended, once their final snapshots are published.

        A long-running keeper sees every trace of its partitions end; keeping each one's
        whole state would grow without bound. What it still needs of an ended trace is that
        it ended (later steps are dropped) and which admissions it applied (a redelivered
        task is recognised); the full final state lives on the state topic.
        """
        for trace_id in trace_ids:
            snapshot = self.traces.get(trace_id)
            if snapshot is not None:
                self.traces[trace_id] = tombstone(snapshot)

    def mark_finished(self, result: TerminalResult) -> None:
        """A terminal record already exists: never write a second one for this trace.

        The trace's state is not touched: if its final snapshot was lost in a crash, the
        outbox records re-read after the committed offset finish it again, exactly as before,
        and only the terminal record is left out.
        """
        self.finished.add(result.trace_id)


class _Rebuild(ConsumerRebalanceListener):
    """Restores a partition's traces before the keeper reads a single record of it."""

    def __init__(self, service: KeeperService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self.service.transactions is not None:  # see Transactions.release
            await self.service.transactions.release({str(tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        numbers = sorted({tp.partition for tp in assigned})
        try:
            await self.service.take_over(numbers)
        except Exception:  # the broker failed mid-read: rebuild again before reading on
            log.exception("restoring partitions failed; retrying")
            self.service._stale = True


class KeeperService:
    """The keeper's Kafka loop: read a batch, transition, produce in phases, commit."""

    def __init__(self, spec: MeshSpec, bootstrap: str, settings: Settings) -> None:
        self.spec = spec
        self.bootstrap = bootstrap
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.keeper = Keeper(spec, self.topics)
        self.group = f"{self.topics.prefix}.keeper"
        self.producer: AIOKafkaProducer = make_producer(bootstrap, "choreo-keeper")
        self.consumer: AIOKafkaConsumer = make_consumer(
            bootstrap, settings, group_id=self.group, client_id="choreo-keeper", max_records=500
        )
        self.lag = metrics.ConsumerLag(self.consumer, self.group)
        #: The topics the keeper reads, each with what it does to one record.
        self._handlers: dict[str, Handler] = {
            self.topics.tasks: self.keeper.intake,
            self.topics.outbox: self.keeper.apply,
            self.topics.control: self.keeper.control,
        }
        metrics.prime_keeper(
            list(self._handlers),
            [(name, f.conflict) for name, f in spec.state.items() if f.reducer == "replace"],
        )
        self.dead_letters = DeadLetters(self.producer, self.topics.dlq, "keeper")
        #: Partition numbers held and restored; a partition lost in a rebalance leaves it.
        self._owned: set[int] = set()
        self.limit = RecordLimit(settings.max_record_bytes - HEADROOM)
        #: A broker error left output unacknowledged: rebuild before reading on.
        self._stale = False
        #: The broker refused a batch outright: handle records one by one to find which.
        self._isolating = False
        #: On a broker with transactions, one transactional producer per partition number.
        self.transactions: Transactions | None = (
            Transactions(bootstrap, self.group, "choreo-keeper")
            if exactly_once(bootstrap, settings)
            else None
        )

    async def take_over(self, partitions: list[int]) -> None:
        """Own ``partitions``: fence their previous owner's producers (which settles its last
        transaction), restore their traces, and read on from their committed offsets.

        Only after the fence are the committed offsets read: before it, a commit the previous
        owner made just before it died may still be on its way to the group coordinator, and
        the consumer may have fetched from an older offset. The seek follows the restore with
        no await between, so no record read from before it is ever applied.
        """
        if self.transactions is None:
            await self.rebuild(partitions)
            return
        await self.transactions.own(str(p) for p in partitions)
        # every partition: a rebalance resets the positions of those kept too
        offsets = await self._committed(list(self.consumer.assignment()))
        await self.rebuild(partitions)
        self._seek(offsets)

    async def _committed(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        return {tp: await self.consumer.committed(tp) for tp in partitions}

    def _seek(self, offsets: dict[TopicPartition, int | None]) -> None:
        """Seek to the committed offsets (the beginning where none), without awaiting."""
        for tp, offset in offsets.items():
            self.consumer.seek(tp, 0 if offset is None else offset)

    async def rebuild(self, partitions: list[int]) -> None:
        """Load the latest snapshots and the written results of newly owned partitions.

        A partition kept across a rebalance was read by no one else meanwhile, so it is not
        read again; one lost and later regained is, since another keeper may have advanced
        its traces in between (``restore`` keeps the newer version).
        """
        self.keeper.partitions = len(self.consumer.partitions_for_topic(self.topics.outbox) or ())
        fresh = sorted(set(partitions) - self._owned)
        self._forget(self._owned - set(partitions))
        self._owned &= set(partitions)
        if not fresh:
            return
        reader = make_consumer(
            self.bootstrap, self.settings, group_id=None, client_id="choreo-keeper-rebuild"
        )
        await reader.start()
        try:
            parts = [TopicPartition(self.topics.state, p) for p in fresh]
            async for rec in read_to_end(reader, parts):
                if rec.value:
                    self.keeper.restore(decode(rec.value, Snapshot))
            parts = [TopicPartition(self.topics.results, p) for p in fresh]
            async for rec in read_to_end(reader, parts):
                if rec.value:
                    self.keeper.mark_finished(decode(rec.value, TerminalResult))
        finally:
            await reader.stop()
        self._owned.update(fresh)
        running = sum(
            1
            for s in self.keeper.traces.values()
            if s.status == "running" and s.trace_id not in self.keeper.finished
        )
        metrics.TRACES_IN_FLIGHT.set(running)
        log.info("partitions restored", extra={"partitions": fresh, "traces": running})

    def _forget(self, lost: set[int]) -> None:
        """Drop the traces of partitions now owned by another keeper: their copies here
        would only go stale, and are read afresh if the partition comes back."""
        if not lost:
            return
        count = len(self.consumer.partitions_for_topic(self.topics.outbox) or ())
        for trace_id in [t for t in self.keeper.traces if partition_for(t, count) in lost]:
            del self.keeper.traces[trace_id]
            self.keeper.finished.discard(trace_id)
            self.keeper.waiting.pop(trace_id, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Read, transition, produce, commit until ``stop``; sweep deadlines on a timer.

        A broker error (a produce or commit that timed out, a leader change, a lost
        connection) is retried with back-off: the owned partitions are rebuilt from what the
        broker holds and re-read from their committed offsets, exactly as after a restart,
        so nothing is lost and no terminal record is written twice. The keeper gives up,
        saying why, only once the broker has failed for ``broker_outage_s``.
        """
        self.limit = await broker_limit(
            self.bootstrap, list(self._handlers), self.settings.max_record_bytes
        )
        self.dead_letters.limit = self.limit
        await self.producer.start()
        self.consumer.subscribe(list(self._handlers), listener=_Rebuild(self))
        await self.consumer.start()
        outage = Outage(self.settings.broker_outage_s, "keeper")
        next_sweep = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    if self._stale:
                        await self._recover()
                    records = self._restored_only(await self.consumer.getmany(timeout_ms=200))
                    if self._stale:
                        continue  # a rebalance could not restore: nothing read is applied
                    if records:
                        await self._process(records)
                    if time.monotonic() >= next_sweep:
                        await self._sweep()
                        next_sweep = time.monotonic() + self.settings.deadline_sweep_s
                    await self.lag.update()
                    outage.ok()
                except KafkaError as exc:
                    self._stale = True
                    if not transient(exc):
                        self._isolating = True  # one of these records makes the broker refuse
                    await _wait(stop, outage.failed(exc))
                except (OSError, TimeoutError) as exc:
                    self._stale = True
                    await _wait(stop, outage.failed(exc))
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            if self.transactions is not None:
                await self.transactions.close()

    def _restored_only(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """The records of partitions whose traces are restored; the others are read again.

        A rebalance restores newly assigned partitions in its listener, and a poll can
        return their records before that restore has finished: applied then, every step of
        a trace not restored yet would look like a step of an unknown trace.
        """
        ready = {}
        for tp, partition_records in records.items():
            if tp.partition in self._owned:
                ready[tp] = partition_records
            elif tp in self.consumer.assignment():
                self.consumer.seek(tp, partition_records[0].offset)
        return ready

    async def _recover(self) -> None:
        """Forget what was not acknowledged: rebuild the owned partitions, seek back to
        their committed offsets."""
        owned = sorted({tp.partition for tp in self.consumer.assignment()})
        self._forget(set(owned))
        self._owned.clear()
        if self.transactions is not None:
            # New producers settle this keeper's own last commits too: a committed offset is
            # only certain once the transaction's markers are written, which their start
            # waits for (KIP-447's stable offsets are not in aiokafka's offset fetch).
            await self.transactions.close()
            await self.transactions.own(str(p) for p in owned)
        offsets = await self._committed(list(self.consumer.assignment()))
        await self.rebuild(owned)
        self._seek(offsets)
        self._stale = False
        log.warning("partitions rebuilt after a broker error", extra={"partitions": owned})

    async def _process(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        if not self._isolating:
            await self._transition(records)
            return
        # After the broker refused a batch outright, each record goes alone: the one it
        # refuses again is dead-lettered and the partition moves on, instead of a crash loop.
        for tp, partition_records in records.items():
            for record in partition_records:
                try:
                    await self._transition({tp: [record]})
                except KafkaError as exc:
                    if transient(exc):
                        raise
                    await self._recover()
                    await self._refused(
                        record,
                        f"the broker refused the keeper's output for "
                        f"this record: {type(exc).__name__}: {exc}",
                    )
            self.consumer.seek(tp, partition_records[-1].offset + 1)
        self._isolating = False

    async def _refused(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Dead-letter a record the broker refuses the output of, and commit past it."""
        tp = TopicPartition(record.topic, record.partition)
        if self.transactions is None:
            await self.dead_letters.send(record, reason)
            await self.consumer.commit({tp: record.offset + 1})
            return
        await self.transactions.run(
            str(record.partition),
            sends_of([self.dead_letters.letter(record, reason)]),
            {tp: record.offset + 1},
        )
        self.dead_letters.noted(record, reason)

    async def _transition(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Handle a batch, produce everything it caused, then commit past it: in two acked
        phases and a commit, or, with transactions, one transaction per partition number."""
        if self.transactions is not None:
            await self._transactions(records)
            return
        batch, letters = self._handle_all(records)
        await self._flush(batch)
        await asyncio.gather(*(self.dead_letters.send(r, why) for r, why in letters))
        await self.consumer.commit(_next_offsets(records))

    def _handle_all(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> tuple[Batch, list[tuple[ConsumerRecord[bytes, bytes], str]]]:
        """Every record's output, and the records to dead-letter with their reasons."""
        batch = Batch(limit=self.limit)
        letters: list[tuple[ConsumerRecord[bytes, bytes], str]] = []
        for tp, partition_records in records.items():
            for record in partition_records:
                with telemetry.consume_span(record, group=self.group) as span:
                    reason = self.keeper.handle(self._handlers[tp.topic], record, batch)
                    if reason:
                        span.set_status(StatusCode.ERROR, reason)
                        letters.append((record, reason))
        return batch, letters

    async def _transactions(
        self, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """One transaction per partition number of the batch (its tasks, outbox and control
        records: the traces of one partition), run concurrently.

        A trace's outputs all go to its own partition number, so each transaction holds
        whole transitions. Any failure leaves the in-memory traces ahead of what committed:
        the caller's recovery rebuilds them from what the broker holds.
        """
        assert self.transactions is not None
        by_partition: dict[int, dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]] = {}
        for tp, partition_records in records.items():
            by_partition.setdefault(tp.partition, {})[tp] = partition_records
        runs = []
        for number, part in sorted(by_partition.items()):
            batch, letters = self._handle_all(part)
            outputs: list[tuple[str, bytes | None, bytes, Headers]] = [
                (t, k.encode(), v, h) for t, k, v, h in batch.first + batch.sends
            ]
            outputs += [
                (self.topics.state, trace_id.encode(), value, [])
                for trace_id, value in batch.snapshot_records()
            ]
            outputs += [self.dead_letters.letter(r, why) for r, why in letters]
            runs.append(
                (
                    batch,
                    letters,
                    self.transactions.run(str(number), sends_of(outputs), _next_offsets(part)),
                )
            )
        outcomes = await asyncio.gather(*(run for _, _, run in runs), return_exceptions=True)
        for (batch, letters, _), outcome in zip(runs, outcomes, strict=True):
            if outcome is None:
                self.keeper.settle(batch.snapshots)
                for record, why in letters:
                    self.dead_letters.noted(record, why)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _flush(self, batch: Batch) -> None:
        """Produce a batch in its acknowledged phases: the admissions it applied as it logged
        them (if any), the records they and the rest of the batch caused, the snapshots."""
        for phase in (batch.first, batch.sends):
            await acked(self.producer.send(t, v, key=k.encode(), headers=h) for t, k, v, h in phase)
        await acked(
            self.producer.send(self.topics.state, value, key=trace_id.encode())
            for trace_id, value in batch.snapshot_records()
        )
        self.keeper.settle(batch.snapshots)

    async def _sweep(self) -> None:
        """End traces past their deadline: log each decision to the outbox (see Keeper.sweep)."""
        batch = Batch(limit=self.limit)
        if self.keeper.sweep(datetime.now(UTC), batch):
            await self._flush(batch)
            log.warning("deadline sweep ends traces", extra={"traces": len(batch.sends)})


def _next_offsets(
    records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
) -> dict[TopicPartition, int]:
    """The offsets to commit after ``records``: one past each partition's last."""
    return {tp: recs[-1].offset + 1 for tp, recs in records.items()}


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _as_read(sent: Send, partition: int) -> ConsumerRecord[bytes, bytes]:
    """A record the keeper queued, as it will be read back (its offset is not known yet)."""
    topic, key, value, headers = sent
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=-1,
        timestamp=-1,
        timestamp_type=0,
        key=key.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(key.encode()),
        serialized_value_size=len(value),
        headers=tuple(headers),
    )


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


def run(spec: MeshSpec, bootstrap: str, settings: Settings) -> None:
    from choreo.kafka.runner import run_service

    async def main(stop: asyncio.Event) -> None:
        await KeeperService(spec, bootstrap, settings).run(stop)  # clients need a running loop

    run_service("keeper", settings, main)
