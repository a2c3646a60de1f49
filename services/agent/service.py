"""The agent service: one consumer group per agent, so its replicas share the work.

Each record is decoded and validated (bad ones go to the dead-letter topic), checked against
the hop budget, turned into one model call and one outbox record, and committed only after
that record is acknowledged. Several records are worked on at once, since model calls are
slow; commits advance only over a finished prefix of each partition (see OffsetTracker). On
SIGTERM, or when partitions are revoked, in-flight steps finish and commit before letting go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from opentelemetry.trace import Span, StatusCode

from choreo.schemas import DecodeError, Envelope, decode, encode
from choreo.schemas.records import STEP_FAILED, STEP_REFUSED
from choreo.services.agent import step as steps
from choreo.services.agent.behaviour import Behaviour, ModelAgent, for_agent
from choreo.services.runtime import allowance, metrics, telemetry
from choreo.services.runtime.kafka import (
    DeadLetters,
    acked,
    forward_headers,
    make_consumer,
    make_producer,
)
from choreo.services.runtime.offsets import OffsetTracker
from choreo.services.runtime.settings import Settings
from choreo.services.runtime.spec import AgentSpec, MeshSpec
from choreo.services.runtime.topics import Topics

log = logging.getLogger(__name__)


class _Drain(ConsumerRebalanceListener):
    """Finish and commit a revoked partition's in-flight steps before it moves elsewhere."""

    def __init__(self, service: AgentService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.service.drain(set(revoked))
        self.service.offsets.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class AgentService:
    def __init__(self, spec: MeshSpec, agent_name: str, bootstrap: str,
                 settings: Settings, behaviour: Behaviour | None = None) -> None:
        self.spec = spec
        self.agent: AgentSpec = spec.agent(agent_name)
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        client_id = f"choreo-agent-{agent_name}"
        self.group = f"{self.topics.prefix}.agent.{agent_name}"
        self.producer: AIOKafkaProducer = make_producer(bootstrap, client_id)
        self.consumer: AIOKafkaConsumer = make_consumer(
            bootstrap, settings, group_id=self.group, client_id=client_id)
        self.lag = metrics.ConsumerLag(self.consumer, self.group)
        self.behaviour: Behaviour = behaviour or for_agent(spec, self.agent)
        models = self.behaviour.models if isinstance(self.behaviour, ModelAgent) else []
        metrics.prime_agent(agent_name, models,
                            [self.topics.event(t) for t in self.agent.subscribe])
        self.dead_letters = DeadLetters(self.producer, self.topics.dlq, f"agent:{agent_name}")
        self.offsets = OffsetTracker()
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Condition()

    async def run(self, stop: asyncio.Event) -> None:
        await self.producer.start()
        self.consumer.subscribe([self.topics.event(t) for t in self.agent.subscribe],
                                listener=_Drain(self))
        await self.consumer.start()
        log.info("agent started", extra={"agent": self.agent.name,
                                          "topics": self.agent.subscribe})
        try:
            while not stop.is_set():
                await self._slots.acquire()  # fetch only when a step can start
                self._slots.release()
                batch = await self.consumer.getmany(timeout_ms=200,
                                                    max_records=self.settings.max_in_flight)
                for records in batch.values():
                    for record in records:
                        await self._slots.acquire()
                        self._start(record)
                await self._commit()
                await self.lag.update()
            await asyncio.wait_for(self.drain(None), self.settings.shutdown_grace_s)
        finally:
            await self.consumer.stop()
            await self.producer.stop()
            await self.behaviour.aclose()

    def _start(self, record: ConsumerRecord[bytes, bytes]) -> None:
        tp = TopicPartition(record.topic, record.partition)
        self.offsets.started(tp, record.offset)
        task = asyncio.create_task(self._handle(record))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._finished(t, tp, record.offset))

    def _finished(self, task: asyncio.Task[None], tp: TopicPartition, offset: int) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if task.cancelled() or task.exception() is not None:
            # Not done: leave the offset in flight, so it is never committed past. The
            # record is redelivered to whoever owns the partition next.
            log.error("step crashed", extra={"offset": offset, "topic": tp.topic},
                      exc_info=None if task.cancelled() else task.exception())
            return
        self.offsets.done(tp, offset)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._idle:
            self._idle.notify_all()

    async def drain(self, partitions: set[TopicPartition] | None) -> None:
        """Wait until no step of ``partitions`` (all when None) is in flight, then commit."""
        async with self._idle:
            await self._idle.wait_for(lambda: self.offsets.in_flight(partitions) == 0
                                      or not self._tasks)
        await self._commit()

    async def _commit(self) -> None:
        offsets = self.offsets.committable()
        if offsets:
            await self.consumer.commit(offsets)
            self.offsets.mark_committed(offsets)

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """One step inside one span that continues the trace of the record's producer."""
        with telemetry.consume_span(record, group=self.group, agent=self.agent.name) as span:
            await self._traced(record, span)

    async def _traced(self, record: ConsumerRecord[bytes, bytes], span: Span) -> None:
        try:
            event = decode(record.value or b"", Envelope)
        except DecodeError as exc:
            span.set_status(StatusCode.ERROR, "undecodable record")
            await self.dead_letters.send(record, str(exc))
            return
        span.set_attributes({"choreo.trace_id": event.trace_id, "choreo.hop": event.hop + 1,
                             "messaging.message.id": event.event_id})
        started = time.perf_counter()
        log.info("step started", extra={"trace_id": event.trace_id, "type": event.type,
                                        "hop": event.hop + 1})
        outputs = await self._step(event)
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        headers = forward_headers(record)  # the outbox records continue this step's span
        for out in outputs:
            out.payload["duration_ms"] = duration_ms
        # Every output acknowledged before the offset may move.
        await acked(self.producer.send(self.topics.outbox, encode(out),
                                       key=event.trace_id.encode(), headers=headers)
                    for out in outputs)
        metrics.STEP_DURATION.labels(agent=self.agent.name).observe(duration_ms / 1000)
        status = {STEP_REFUSED: "refused", STEP_FAILED: "failed"}.get(outputs[0].type, "ok")
        metrics.STEPS.labels(agent=self.agent.name, status=status).inc()
        span.set_attributes({"choreo.step.status": status,
                             "choreo.step.emitted": [out.type for out in outputs],
                             "choreo.cost_usd": sum(out.usage.cost for out in outputs)})
        if status == "failed":  # a refusal (over budget) is the mesh working, not an error
            span.set_status(StatusCode.ERROR, str(outputs[0].payload.get("reason", status)))
        log.info("step done", extra={"trace_id": event.trace_id, "status": status,
                                     "emitted": [out.type for out in outputs]})

    async def _step(self, event: Envelope) -> list[Envelope]:
        return await run_step(self.agent, self.behaviour, event)


async def run_step(agent: AgentSpec, behaviour: Behaviour, event: Envelope) -> list[Envelope]:
    """One step's outbox records: a refusal when a budget forbids the step (judged from the
    event, so it holds with no watchdog), else the behaviour's, every model call capped by the
    keeper's allowance (a call that cannot fit becomes a refusal with the figures)."""
    refusal = steps.over_budget(event, datetime.now(UTC))
    if refusal is not None:
        return [steps.step_event(agent, event, STEP_REFUSED,
                                 payload={"reason": f"{agent.name}: {refusal}"})]
    try:
        with allowance.spending(event.allowance):
            return await behaviour.step(event)
    except allowance.OverBudget as exc:
        log.warning("step refused: over budget", extra={"trace_id": event.trace_id,
                                                        "rule": exc.rule})
        return [steps.step_event(
            agent, event, STEP_REFUSED, usage=exc.spent,
            payload={"reason": f"{agent.name}: {exc}",
                     "budget": {"rule": exc.rule, "details": exc.details}})]


def run(spec: MeshSpec, agent_name: str, bootstrap: str, settings: Settings) -> None:
    from choreo.services.runtime.service import run_service

    async def main(stop: asyncio.Event) -> None:
        await AgentService(spec, agent_name, bootstrap, settings).run(stop)  # needs a loop

    run_service(f"agent:{agent_name}", settings, main)
