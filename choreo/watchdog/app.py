"""The watchdog service: hop records and snapshots in, verdicts out.

A faust-streaming worker reads ``choreo.hops`` (one record per applied step, with the trace's
exact running totals) and ``choreo.state`` (snapshots, for each trace's admitted budget,
deadline and terminal status). Both are keyed by trace id and have the mesh's partition count,
so one faust table partition holds every trace of the matching topic partitions and a
restarted or rebalanced worker resumes with its detector state. Budgets never depend on that
table being exact: each record carries the totals it is checked against.

Verdicts are sent (and acknowledged) before the table is updated: a crash in between re-sends
the same verdict with the same deterministic id rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import faust
import msgspec
from aiokafka.errors import KafkaError

from choreo.kafka.limits import HEADROOM, RecordLimit
from choreo.kafka.topics import ensure_topics
from choreo.observe import logs, metrics, telemetry
from choreo.observe.settings import Settings
from choreo.schemas import (
    Budget,
    DeadLetter,
    DecodeError,
    HopRecord,
    decode,
    encode,
)
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec
from choreo.spec.watchdog import app_id
from choreo.watchdog.detectors import TraceWatch, dump_watch, load_watch
from choreo.watchdog.policy import Answer, SnapshotHead, Watchdog

log = logging.getLogger(__name__)

CONSUMER = "watchdog"
TABLE = "traces"


class _Traced(Protocol):
    @property
    def trace_id(self) -> str: ...


R = TypeVar("R", bound=_Traced)

_snapshot_head = msgspec.json.Decoder(SnapshotHead)


def default_budget(spec: MeshSpec) -> Budget:
    """The mesh's budget, for traces whose admission snapshot the watchdog has not seen yet."""
    b = spec.budgets
    return Budget(
        max_hops=b.max_hops, max_tokens=b.max_tokens, max_cost=b.max_cost, max_seconds=b.max_seconds
    )


def decode_hop(data: bytes) -> HopRecord:
    return decode(data, HopRecord)


def decode_snapshot(data: bytes) -> SnapshotHead:
    """Only the head of a snapshot: its state fields can be large and are not needed here."""
    try:
        return _snapshot_head.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid Snapshot: {exc}") from None


def build_app(spec: MeshSpec, bootstrap: str, settings: Settings, datadir: str) -> faust.App:
    """The faust app with its topics, table and the two agents; not started.

    The table lives in memory and its changelog topic, so ``datadir`` holds nothing that
    must outlive the process.
    """
    names = Topics(settings.topic_prefix)
    partitions = spec.topics.partitions
    app = faust.App(
        app_id(settings.topic_prefix),
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,
        topic_partitions=partitions,
        topic_replication_factor=spec.topics.replication_factor,
        table_standby_replicas=0,
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
    )

    raw: faust.Schema = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, schema=raw, partitions=partitions)

    hops, state = topic(names.hops), topic(names.state)
    control, dlq = topic(names.control), topic(names.dlq)
    table = app.Table(TABLE, default=None, partitions=partitions, key_type=bytes, value_type=bytes)
    policy = Watchdog(spec.watchdog, default_budget(spec))

    async def send(
        target: faust.TopicT, key: bytes | None, value: bytes, headers: Any = None
    ) -> None:
        # verdicts join the trace of the hop record that caused them
        pending = await target.send(key=key, value=value, headers=telemetry.inject(headers or ()))
        await pending

    async def answer(trace_id: str, answers: list[Answer]) -> None:
        for record in answers:
            await send(control, trace_id.encode(), encode(record))
            metrics.VERDICTS.labels(action=record.action, reason=record.reason).inc()
            log.warning(
                "verdict",
                extra={
                    "trace_id": trace_id,
                    "action": record.action,
                    "reason": record.reason,
                    "agent": record.agent,
                },
            )

    async def dead_letter(event: faust.EventT, reason: str) -> None:
        msg = event.message
        letter = DeadLetter(
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key.decode("utf-8", "replace") if msg.key is not None else None,
            reason=reason,
            consumer=CONSUMER,
            original=msg.value or b"",
        )
        await send(dlq, msg.key, limit.dead_letter(letter), list(msg.headers or ()))
        metrics.DEAD_LETTERS.labels(consumer=CONSUMER, topic=msg.topic).inc()
        log.warning(
            "dead-lettered record",
            extra={
                "trace_id": letter.key,
                "topic": msg.topic,
                "offset": msg.offset,
                "reason": reason,
            },
        )

    async def consume(
        stream: AsyncIterator[faust.EventT],
        parse: Callable[[bytes], R],
        apply: Callable[[TraceWatch, R, datetime], list[Answer]],
    ) -> None:
        async for event in stream:
            # hops and snapshots of one trace share its table entry: one update at a time
            with telemetry.consume_span(event.message, group=app.conf.id):
                async with updating:
                    await handle(event, parse, apply)

    updating = asyncio.Lock()
    limit = RecordLimit(settings.max_record_bytes - HEADROOM)

    async def handle(
        event: faust.EventT,
        parse: Callable[[bytes], R],
        apply: Callable[[TraceWatch, R, datetime], list[Answer]],
    ) -> None:
        """One record; whatever it raises (other than the broker's own errors, which faust
        retries) parks it on the dead-letter topic and the stream moves on."""
        try:
            await check(event, parse, apply)
        except KafkaError:
            raise
        except Exception as exc:
            log.exception("watchdog failed on a record", extra={"topic": event.message.topic})
            await dead_letter(event, f"watchdog error: {type(exc).__name__}: {exc}")

    async def check(
        event: faust.EventT,
        parse: Callable[[bytes], R],
        apply: Callable[[TraceWatch, R, datetime], list[Answer]],
    ) -> None:
        try:
            record = parse(event.value)
        except DecodeError as exc:
            await dead_letter(event, str(exc))
            return
        trace_id = record.trace_id
        if event.key != trace_id.encode():
            await dead_letter(event, f"record key is not its trace id {trace_id!r}")
            return
        stored = table.get(event.key)
        watch = load_watch(stored) if stored is not None else TraceWatch(trace_id=trace_id)
        answers = apply(watch, record, datetime.now(UTC))
        await answer(trace_id, answers)
        table[event.key] = dump_watch(watch)

    @app.agent(hops)
    async def on_hops(stream: faust.StreamT) -> None:
        await consume(stream.events(), decode_hop, policy.on_hop)

    @app.agent(state)
    async def on_state(stream: faust.StreamT) -> None:
        await consume(stream.events(), decode_snapshot, policy.on_snapshot)

    return app


def run(spec: MeshSpec, bootstrap: str, settings: Settings) -> None:
    """Run the watchdog until SIGTERM or SIGINT; topics are created first if missing."""
    logs.configure(settings, "watchdog")  # before faust, which keeps the root logger as set
    log.info("watchdog starting", extra={"mesh": spec.name, "prefix": settings.topic_prefix})
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(bootstrap, Topics(settings.topic_prefix), spec))
    telemetry.configure("watchdog")
    with (
        metrics.expose(settings.metrics_port, "watchdog"),
        tempfile.TemporaryDirectory(prefix="choreo-watchdog-") as datadir,
    ):
        worker = faust.Worker(
            build_app(spec, bootstrap, settings, datadir),
            loop=loop,
            loglevel=settings.log_level,
            quiet=True,
            redirect_stdouts=False,
            override_logging=False,
        )
        worker.spinner = None  # its cursor codes would land in the log file
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            telemetry.shutdown()
            log.info("watchdog stopped", extra={"mesh": spec.name})
