"""The agent service: one consumer group per agent, so its replicas share the work.

Each record is decoded and validated (bad ones go to the dead-letter topic), checked against
the hop budget, turned into one model call and one outbox record, and committed only after
that record is acknowledged (on Apache Kafka: the records and the offset in one transaction,
choreo.agent.outbox). Several records are worked on at once, since model calls are
slow; commits advance only over a finished prefix of each partition (see OffsetTracker). On
SIGTERM, or when partitions are revoked, in-flight steps finish (within the grace period) and
commit before letting go.

Liveness (docs/ARCHITECTURE.md): whatever a step raises, of any class (choreo.tools.boundary;
only the service's own cancellation passes), ends as a ``step.failed`` record or a dead
letter, so every offset moves on; a record whose step ended the process itself is found on
its next delivery (choreo.agent.markers) and dead-lettered rather than run forever. The loop
polls all the time, pausing its partitions while it is full or a model tier is down, so a
slow step never costs the group membership.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

import msgspec
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
)
from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import Span, StatusCode

from choreo.agent import step as steps
from choreo.agent.behaviour import Behaviour, ModelAgent
from choreo.agent.kinds import BehaviourFactory, behaviour_for
from choreo.agent.markers import Solo, StepMarkers
from choreo.agent.outbox import HeldOutputs, Overtaken, unit_of
from choreo.budget import allowance
from choreo.kafka.blobs import BlobReader
from choreo.kafka.clients import (
    BrokerOutage,
    Outage,
    acked,
    forward_headers,
    transient,
)
from choreo.kafka.errors import Fenced
from choreo.kafka.offsets import OffsetTracker
from choreo.kafka.security import NOT_ALLOWED
from choreo.kafka.service import ConsumerService
from choreo.models.client import Pausing
from choreo.observe import metrics, telemetry
from choreo.observe.settings import Settings
from choreo.schemas import DecodeError, Envelope, Usage, decode, encode
from choreo.schemas.codec import clean_text
from choreo.schemas.records import STEP_FAILED, STEP_REFUSED
from choreo.schemas.topics import Topics
from choreo.spec.mesh import AgentSpec, MeshSpec
from choreo.tools.boundary import UserCodeRaised, describe, guarded

log = logging.getLogger(__name__)

#: Characters of an exception's text kept as a failed step's reason.
REASON_CHARS = 2000
#: The longest one poll waits, ms: for records, or, while every slot is busy, for a step to
#: finish. A poll at least this often keeps the member in its group whatever the steps do.
POLL_MS = 200
#: Output index of the ``step.failed`` record that replaces a step that raised: its id differs
#: from every output the step itself could have written, and is the same on every rerun.
CRASH_INDEX = -1


class _Drain(ConsumerRebalanceListener):
    """Finish and commit a revoked partition's in-flight steps before it moves elsewhere."""

    def __init__(self, service: AgentService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """Drain, then forget the partitions and stop their producers, even when the drain's
        commit failed (aiokafka logs a listener's error and rejoins all the same): state kept
        past this would be written again if a partition came back."""
        service = self.service
        try:
            await service.drain(set(revoked))
        except Fenced as exc:  # every partition is given up: nothing held is written
            log.warning(
                "partitions given up after their new owner fenced this agent",
                extra={"agent": service.agent.name, "error": str(exc)},
            )
        except Exception as exc:  # BrokerOutage, a missing ACL: the loop raises it
            service._fatal = exc
        finally:
            service.offsets.forget(revoked)
            if service.held is not None:
                service.held.forget(revoked)
                service.taken.difference_update(revoked)
                await service.held.transactions.release(unit_of(tp) for tp in revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """With transactions: fence the previous owners first (settling their last commits),
        then read the committed offsets and seek there; records fetched before that (from an
        offset read too early) are not started (see AgentService.taken)."""
        service = self.service
        # after every rebalance: which replica serves which partitions (empty: none, idle)
        log.info(
            "partitions assigned",
            extra={
                "agent": service.agent.name,
                "partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in assigned),
            },
        )
        if service.held is None:
            return
        try:
            await service.held.transactions.own(unit_of(tp) for tp in assigned)
            offsets = await service.committed(assigned)
        except Exception as exc:  # the loop raises it: the agent restarts from its commits
            service._fatal = exc
            return
        service.seek(offsets)  # no await from here: seek and take at once
        service.taken.update(offsets)
        service.held.start(offsets)


class AgentService(ConsumerService):
    """One replica of an agent: its consumer-group member, its behaviour, its steps.

    Use as ``async with AgentService(spec, name, bootstrap, settings) as agent: await
    agent.run(stop)``, inside a running event loop. Entering starts the Kafka clients and
    builds the behaviour (its model clients, MCP sessions); leaving stops them in reverse.
    ``behaviour`` builds the behaviour instead of the agent's kind (choreo.agent.kinds).
    """

    def __init__(
        self,
        spec: MeshSpec,
        agent_name: str,
        bootstrap: str,
        settings: Settings,
        behaviour: BehaviourFactory = behaviour_for,
    ) -> None:
        self.spec = spec
        self.agent: AgentSpec = spec.agent(agent_name)
        topics = Topics(settings.topic_prefix)
        super().__init__(
            bootstrap,
            settings,
            group=topics.agent_group(agent_name),
            client_id=f"choreo-agent-{agent_name}",
            inputs=[topics.event(t) for t in self.agent.subscribe],
            consumer_name=f"agent:{agent_name}",
        )
        self._build = behaviour
        #: What turns each event into the step's records; built on enter.
        self.behaviour: Behaviour
        #: Fetches the state's values by reference (choreo.kafka.blobs); built on enter.
        self.blobs: BlobReader
        #: The model tiers whose outage pauses this agent: those its behaviour calls.
        self.pausing = Pausing()
        #: On a broker with transactions, finished steps' records wait here for their commit.
        self.held: HeldOutputs | None = (
            HeldOutputs(self.transactions, self.dead_letters, self.committed)
            if self.transactions is not None
            else None
        )
        self._commit_outage = Outage(settings.broker_outage_s, f"agent {agent_name} commit")
        #: With transactions, the partitions whose previous owner is fenced and whose reading
        #: starts from the offset committed after that; records of others are not started.
        self.taken: set[TopicPartition] = set()
        self._committing = asyncio.Lock()
        self.offsets = OffsetTracker()
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._idle = asyncio.Condition()
        #: Set as a step finishes: wakes a loop waiting for a free slot.
        self._freed = asyncio.Event()
        self._fatal: BaseException | None = None
        self._paused_for = False  # paused because a model tier is down
        #: Which records' steps are running, kept past this process (choreo.agent.markers).
        self.markers = StepMarkers(settings.markers_folder() / self.group)
        self.solo = Solo()

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _Drain(self)

    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        """Build the behaviour (its model clients join ``pausing``); it closes on exit."""
        with self.pausing.collecting():
            self.behaviour = self._build(self.spec, self.agent)
        stack.push_async_callback(self.behaviour.aclose)
        self.blobs = BlobReader(self.bootstrap, self.settings, f"{self._client_id}-blobs")
        stack.push_async_callback(self.blobs.close)
        stack.callback(self.markers.tidy)
        models = self.behaviour.models if isinstance(self.behaviour, ModelAgent) else []
        metrics.prime_agent(self.agent.name, models, self.inputs)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``, then let the steps in flight finish and commit."""
        log.info("agent started", extra={"agent": self.agent.name, "topics": self.agent.subscribe})
        await self._consume(stop)
        await self.drain(None)

    async def _consume(self, stop: asyncio.Event) -> None:
        """Poll without pause, whatever the steps are doing: a member that stops polling for
        ``max_poll_interval_ms`` is evicted and its steps run twice. While every slot is busy
        the partitions are paused, so polling keeps the membership and fetches nothing; the
        loop then waits for a step to finish, not for the poll's timeout (a poll of paused
        partitions sleeps its whole timeout, which would leave a freed slot idle for it)."""
        while not stop.is_set():
            if self._fatal is not None:
                raise self._fatal
            self._freed.clear()
            free = self.settings.max_in_flight - len(self._tasks)
            down = self._model_down()  # first: the gauge follows an outage even when full
            self._hold(free <= 0 or down)
            full = free <= 0 and not down
            if full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), POLL_MS / 1000)
            batch = await self.consumer.getmany(
                timeout_ms=0 if full else POLL_MS, max_records=max(free, 1)
            )
            for tp, records in batch.items():
                if self.held is not None and tp not in self.taken:
                    continue  # read before the takeover's seek, which reads them again
                for record in records:
                    self._start(record)
            await self._commit()
            await self.lag.update()

    def _model_down(self) -> bool:
        """Back-pressure: while a tier this agent calls is down (``on_outage: pause``), take
        no new records. Steps already running wait for the tier inside their call, their
        offsets uncommitted; records not yet fetched stay on the topic."""
        down = self.pausing.tiers_down()
        if bool(down) != self._paused_for:
            self._paused_for = bool(down)
            metrics.AGENT_PAUSED.labels(agent=self.agent.name).set(int(self._paused_for))
            if down:
                log.warning(
                    "agent paused: model tier down", extra={"agent": self.agent.name, "tiers": down}
                )
            else:
                log.warning("agent resumed: model tiers answer", extra={"agent": self.agent.name})
        return self._paused_for

    def _hold(self, paused: bool) -> None:
        """Pause (or resume) every partition owned now; a newly assigned one starts resumed."""
        assigned = self.consumer.assignment()
        if paused:
            self.consumer.pause(*assigned)
        else:
            self.consumer.resume(*assigned)

    def _start(self, record: ConsumerRecord[bytes, bytes]) -> None:
        tp = TopicPartition(record.topic, record.partition)
        self.offsets.started(tp, record.offset)
        task = asyncio.create_task(self._handle(record))
        self._tasks[task] = tp
        task.add_done_callback(lambda t: self._finished(t, tp, record.offset))

    def _finished(self, task: asyncio.Task[None], tp: TopicPartition, offset: int) -> None:
        self._tasks.pop(task, None)
        self._freed.set()
        if task.cancelled():
            # Left in flight, never committed past: the next owner runs it again.
            log.warning("step cancelled", extra={"offset": offset, "topic": tp.topic})
        elif (exc := task.exception()) is not None:
            # Neither a step record nor a dead letter could be written: the broker is gone.
            log.error(
                "record could not be handled",
                extra={"offset": offset, "topic": tp.topic},
                exc_info=exc,
            )
            self._fatal = exc
        else:
            self.offsets.done(tp, offset)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._idle:
            self._idle.notify_all()
        if self.held is not None:
            # Written as soon as a step finishes, not at the next poll (which may long-poll):
            # a step's records are only sent with its commit. Steps finishing while one
            # transaction runs go together in the next.
            try:
                await self._commit()
            except Exception as exc:  # Fenced, BrokerOutage: the loop raises it
                self._fatal = exc

    async def drain(self, partitions: set[TopicPartition] | None) -> None:
        """Let the steps of ``partitions`` (all when None) finish, then commit.

        A step still running after ``shutdown_grace_s`` (a call waiting out a model outage,
        say) is cancelled: its offset is not committed, so the partition's next owner runs it
        again, and the keeper drops a repeated step by its id. A rebalance or a stop thus
        waits a bounded time, whatever the steps do.
        """

        def running() -> list[asyncio.Task[None]]:
            return [
                task for task, tp in self._tasks.items() if partitions is None or tp in partitions
            ]

        try:
            async with asyncio.timeout(self.settings.shutdown_grace_s), self._idle:
                await self._idle.wait_for(lambda: not running())
        except TimeoutError:
            left = running()
            log.warning(
                "steps cancelled: their partition moves or the agent stops",
                extra={"steps": len(left)},
            )
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
        await self._commit()

    async def _commit(self) -> None:
        if self.held is not None:
            async with self._committing:  # one transaction at a time per producer
                if offsets := self.offsets.committable():
                    await self._commit_held(offsets)
            return
        offsets = self.offsets.committable()
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on (a rebalance): the new owner reads from the last commit.
            log.warning("commit refused", extra={"reason": f"{type(exc).__name__}: {exc}"})
            return
        self.offsets.mark_committed(offsets)
        self.markers.committed(offsets)

    async def _commit_held(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit each partition's finished prefix with its records, one transaction each.

        A transient failure keeps everything held for the next poll's try (giving up, with
        ``BrokerOutage``, after ``broker_outage_s``); ``Fenced`` stops the agent.
        """
        assert self.held is not None
        for tp, offset in offsets.items():
            if tp not in self.consumer.assignment():
                continue  # revoked meanwhile: its next owner runs the steps again
            try:
                await self.held.commit(tp, offset)
            except Overtaken as moved:
                await self._restart(tp, moved.offset)
                continue
            except NOT_ALLOWED:
                raise  # a missing ACL: the agent exits saying so; its steps wait uncommitted
            except (KafkaError, OSError, TimeoutError) as exc:
                self._commit_outage.failed(exc)  # raises BrokerOutage in the end
                return
            self._commit_outage.ok()
            self.offsets.mark_committed({tp: offset})
            self.markers.committed({tp: offset})

    async def _restart(self, tp: TopicPartition, offset: int | None) -> None:
        """Read ``tp`` again from ``offset``, its commit made meanwhile by a transaction other
        than this process knew of (choreo.agent.outbox.Overtaken): its steps in flight are
        cancelled and what they finished forgotten, as if it had been revoked and assigned."""
        assert self.held is not None
        log.warning(
            "partition committed meanwhile: read again from its committed offset",
            extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
        )
        self.taken.discard(tp)  # records fetched until the seek are not started
        left = [task for task, of in self._tasks.items() if of == tp]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        self.offsets.forget([tp])
        self.held.forget([tp])
        if offset is not None:
            self.markers.committed({tp: offset})
        self.seek({tp: offset})  # no await from here: seek and take at once
        self.taken.add(tp)
        self.held.start({tp: offset})

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        """Dead-letter ``record`` now, or with its offset's transaction when there is one."""
        if self.held is None:
            await self.dead_letters.send(record, reason)
        else:
            self.held.hold_letter(record, reason)

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One record inside one span that continues the trace of the record's producer.

        Whatever goes wrong ends here: an undecodable record as a dead letter, any exception
        of a decoded one's step as a ``step.failed`` record with its reason (else a dead
        letter), so the offset always moves on. Only a broker that takes neither raises.
        """
        with telemetry.consume_span(record, group=self.group, agent=self.agent.name) as span:
            try:
                event = decode(record.value or b"", Envelope)
            except DecodeError as exc:
                span.set_status(StatusCode.ERROR, "undecodable record")
                await self._dead_letter(record, str(exc))
                return
            span.set_attributes(
                {
                    "choreo.trace_id": event.trace_id,
                    "choreo.hop": event.hop + 1,
                    "messaging.message.id": event.event_id,
                }
            )
            verdict = self.markers.judge(record)
            if verdict.convicted:
                await self._convicted(record, event, span, verdict.deaths)
                return
            async with self.solo.step(alone=verdict.deaths > 0):
                self.markers.running(record, verdict.deaths)
                try:
                    await self._guarded(record, event, span)
                finally:
                    self.markers.done(record)

    async def _guarded(
        self, record: ConsumerRecord[bytes, bytes], event: Envelope, span: Span
    ) -> None:
        """The step, with any exception but the broker's ending it as a failed step."""
        outputs: list[Envelope] = []
        try:
            await guarded(self._traced(record, event, span, outputs))
        except BrokerOutage:
            raise
        except Exception as exc:  # one record's failure, of any class, ends its step
            cause = exc.original if isinstance(exc, UserCodeRaised) else exc
            await self._crashed(
                record, event, span, cause, outputs[0].usage if outputs else Usage()
            )

    async def _traced(
        self,
        record: ConsumerRecord[bytes, bytes],
        event: Envelope,
        span: Span,
        outputs: list[Envelope],
    ) -> None:
        """Run the step into ``outputs`` (kept by the caller: a step whose records cannot be
        written still spent what they say) and write them."""
        started = time.perf_counter()
        log.debug(
            "step started",
            extra={"trace_id": event.trace_id, "type": event.type, "hop": event.hop + 1},
        )
        outputs.extend(await self._step(event))
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        for out in outputs:
            out.payload["duration_ms"] = duration_ms
        await self._send(record, outputs)
        status = {STEP_REFUSED: "refused", STEP_FAILED: "failed"}.get(outputs[0].type, "ok")
        self._count(span, status, duration_ms)
        span.set_attributes(
            {
                "choreo.step.emitted": [out.type for out in outputs],
                "choreo.cost_usd": sum(out.usage.cost for out in outputs),
            }
        )
        if status == "failed":  # a refusal (over budget) is the mesh working, not an error
            span.set_status(StatusCode.ERROR, str(outputs[0].payload.get("reason", status)))
        # each step at debug; a refused or failed step is a verdict on the trace: info
        log.log(
            logging.DEBUG if status == "ok" else logging.INFO,
            "step done",
            extra={
                "trace_id": event.trace_id,
                "status": status,
                "emitted": [out.type for out in outputs],
                "reason": outputs[0].payload.get("reason"),
            },
        )

    async def _send(self, record: ConsumerRecord[bytes, bytes], outputs: list[Envelope]) -> None:
        """Every output acknowledged before the offset may move; the outbox records continue
        this step's span.

        Transient broker errors are met by sending the records again with back-off: their ids
        are those of the step, so the keeper drops any written twice. After
        ``broker_outage_s`` raises ``BrokerOutage`` (an infrastructure failure that stops the
        agent; its uncommitted records are redelivered after a restart); any other error is
        the records' own (too large, say) and ends the step.
        """
        headers = forward_headers(record)
        encoded = [(out.trace_id.encode(), encode(out)) for out in outputs]
        if self.held is not None:  # written with the offset, in _commit_held
            for _, value in encoded:
                if len(value) > self.settings.max_record_bytes:
                    raise MessageSizeTooLargeError(
                        f"a step record of {len(value)} bytes is over the limit of "
                        f"{self.settings.max_record_bytes} bytes"
                    )
            self.held.hold(
                record, [(self.topics.outbox, key, value, headers) for key, value in encoded]
            )
            return
        outage = Outage(self.settings.broker_outage_s, f"agent {self.agent.name}")
        while True:
            try:
                await acked(
                    self.producer.send(self.topics.outbox, value, key=key, headers=headers)
                    for key, value in encoded
                )
                outage.ok()
                return
            except KafkaError as exc:
                if not transient(exc):
                    raise
                await asyncio.sleep(outage.failed(exc))  # raises BrokerOutage in the end

    async def _crashed(
        self,
        record: ConsumerRecord[bytes, bytes],
        event: Envelope,
        span: Span,
        exc: BaseException,
        spent: Usage,
    ) -> None:
        """End a step that raised as ``step.failed`` with why (and what it had spent); if even
        that cannot be written, dead-letter the record with the same reason."""
        reason = clean_text(describe(exc))[:REASON_CHARS]
        log.error(
            "step crashed", extra={"trace_id": event.trace_id, "reason": reason}, exc_info=exc
        )
        await self._failed(record, event, span, reason, spent)

    async def _convicted(
        self, record: ConsumerRecord[bytes, bytes], event: Envelope, span: Span, deaths: int
    ) -> None:
        """A record whose step ended the process ``deaths`` times (choreo.agent.markers):
        its trace ends failed saying so, and the record is dead-lettered, not run again."""
        reason = (
            f"this record's step ended the agent process {deaths} times (the last time "
            "running alone): not run again"
        )
        log.error(
            "record dead-lettered: its step ended the process",
            extra={
                "trace_id": event.trace_id,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "deaths": deaths,
            },
        )
        self.markers.convicted(record, deaths)
        span.set_status(StatusCode.ERROR, reason)
        failed = steps.step_event(
            self.agent,
            event,
            STEP_FAILED,
            index=CRASH_INDEX,
            payload={"reason": f"{self.agent.name}: {reason}"},
        )
        if self.held is None:
            await self._send(record, [failed])
            await self.dead_letters.send(record, reason)
        else:  # both in the offset's transaction (a held letter would replace the record)
            outbox = (self.topics.outbox, failed.trace_id.encode(), encode(failed))
            self.held.hold(
                record,
                [(*outbox, forward_headers(record)), self.dead_letters.letter(record, reason)],
            )
        self._count(span, "failed", 0.0)

    async def _failed(
        self,
        record: ConsumerRecord[bytes, bytes],
        event: Envelope,
        span: Span,
        reason: str,
        spent: Usage,
    ) -> None:
        """Write the step's ``step.failed`` record with ``reason`` (or dead-letter)."""
        span.set_status(StatusCode.ERROR, reason)
        failed = steps.step_event(
            self.agent,
            event,
            STEP_FAILED,
            index=CRASH_INDEX,
            payload={"reason": f"{self.agent.name}: {reason}"},
            usage=spent,
        )
        try:
            await self._send(record, [failed])
        except BrokerOutage:
            raise
        except Exception as again:  # the dead letter is the last resort
            await self._dead_letter(
                record, f"{reason}; and its step.failed record: {type(again).__name__}: {again}"
            )
            return
        self._count(span, "failed", 0.0)

    def _count(self, span: Span, status: str, duration_ms: float) -> None:
        metrics.STEP_DURATION.labels(agent=self.agent.name).observe(duration_ms / 1000)
        metrics.STEPS.labels(agent=self.agent.name, status=status).inc()
        span.set_attribute("choreo.step.status", status)

    async def _step(self, event: Envelope) -> list[Envelope]:
        """The step on ``event`` with its state's values by reference fetched: the agent
        sees values (a chunk missing or not matching its hash fails the step)."""
        if event.state:
            event = msgspec.structs.replace(event, state=await self.blobs.state(event.state))
        return await run_step(self.agent, self.behaviour, event)


async def run_step(agent: AgentSpec, behaviour: Behaviour, event: Envelope) -> list[Envelope]:
    """One step's outbox records: a refusal when a budget forbids the step (judged from the
    event, so it holds with no watchdog), else the behaviour's, every model call capped by the
    keeper's allowance (a call that cannot fit becomes a refusal with the figures)."""
    refusal = steps.over_budget(event, datetime.now(UTC))
    if refusal is not None:
        return [
            steps.step_event(
                agent, event, STEP_REFUSED, payload={"reason": f"{agent.name}: {refusal}"}
            )
        ]
    try:
        with allowance.spending(event.allowance):
            return await behaviour.step(event)
    except allowance.OverBudget as exc:
        log.warning(
            "step refused: over budget", extra={"trace_id": event.trace_id, "rule": exc.rule}
        )
        return [
            steps.step_event(
                agent,
                event,
                STEP_REFUSED,
                usage=exc.spent,
                payload={
                    "reason": f"{agent.name}: {exc}",
                    "budget": {"rule": exc.rule, "details": exc.details},
                },
            )
        ]
