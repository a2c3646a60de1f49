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
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import faust
import msgspec
from aiokafka.errors import KafkaError
from faust.types import TableT

from choreo.kafka.acl import service_topics
from choreo.kafka.clients import kind_of
from choreo.kafka.limits import HEADROOM, RecordLimit
from choreo.kafka.security import security_of
from choreo.kafka.service import Service
from choreo.kafka.topics import ensure_topics, replication_factor
from choreo.observe import metrics, telemetry
from choreo.observe.settings import Settings
from choreo.schemas import (
    Budget,
    DeadLetter,
    DecodeError,
    HopRecord,
    decode,
    encode,
)
from choreo.schemas.deltas import of_trace
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec
from choreo.spec.watchdog import app_id
from choreo.watchdog.detectors import TraceWatch, dump_watch, load_watch
from choreo.watchdog.policy import Answer, SnapshotHead, Watchdog
from choreo.watchdog.transport import CommittedTransport, Transport

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
    """Only the head of a snapshot, or of a delta of the state log (it carries the same head):
    state fields can be large and are not needed here."""
    try:
        return _snapshot_head.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(f"invalid Snapshot: {exc}") from None


class WatchdogService(Service):
    """The watchdog of one mesh: a faust app that reads hop records and snapshots and answers
    with verdicts. Handling is per record (``_handle``): nothing one record raises stops it.

    A service like every other (choreo.kafka.service.Service): entering creates the mesh's
    topics if missing, builds the faust app in the running event loop (its topics, its
    ``traces`` table, the two agents) and starts it; faust's ``App`` is a ``mode.Service``,
    whose ``start`` returns once the app has joined its group and recovered its table, so it
    runs in any event loop without faust's ``Worker`` (which would own the loop, the signals
    and the logging). Leaving stops the app and removes its data folder. ``run(stop)`` waits
    for ``stop``, and raises what crashed the app if anything did.
    """

    def __init__(self, spec: MeshSpec, bootstrap: str, settings: Settings) -> None:
        self.spec = spec
        self.bootstrap = bootstrap
        self.settings = settings
        self.names = Topics(settings.topic_prefix)
        self.policy = Watchdog(spec.watchdog, default_budget(spec))
        self.limit = RecordLimit(settings.max_record_bytes - HEADROOM)
        #: Hops and snapshots of one trace share its table entry: one update at a time.
        self._updating = asyncio.Lock()
        # Built on enter, in the running event loop (faust binds to it):
        self.app: faust.App
        self.replicas: int
        self.table: TableT[bytes, bytes]
        self.control: faust.TopicT
        self.dlq: faust.TopicT

    async def _acquire(self, stack: contextlib.AsyncExitStack) -> None:
        """Create the topics, build the app in a data folder of its own, start it."""
        log.info("watchdog starting", extra={"mesh": self.spec.name, "prefix": self.names.prefix})
        # only its own: under least privilege it may not see (or create) the others
        used = service_topics(self.spec, self.names, "watchdog")
        await ensure_topics(
            self.bootstrap, self.names, self.spec, security_of(self.settings), only=used
        )
        # faust's own topics (the table's changelog) get what the mesh's topics got
        self.replicas = await replication_factor(
            self.bootstrap, self.spec.topics, security_of(self.settings)
        )
        datadir = stack.enter_context(tempfile.TemporaryDirectory(prefix="choreo-watchdog-"))
        self.app = self._build(datadir)
        stack.push_async_callback(self._stop_app)
        await self.app.start()
        log.info("watchdog started", extra={"mesh": self.spec.name, "group": self.app.conf.id})

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set. Raises what crashed the app (faust's agents and
        consumer report their failures to the app rather than raise them)."""
        await self.app.wait(stop.wait())  # or until the app stops or crashes
        if self.app.crash_reason is not None:
            raise self.app.crash_reason

    async def _stop_app(self) -> None:
        await self.app.stop()
        log.info("watchdog stopped", extra={"mesh": self.spec.name})

    def _build(self, datadir: str) -> faust.App:
        """The faust app with its topics, table and the two agents; not started.

        The table lives in memory and its changelog topic, so ``datadir`` holds nothing that
        must outlive the service.
        """
        settings, partitions = self.settings, self.spec.topics.partitions
        app = faust.App(
            app_id(settings.topic_prefix),
            broker=f"kafka://{self.bootstrap}",
            store="memory://",
            datadir=datadir,
            topic_partitions=partitions,
            topic_replication_factor=self.replicas,
            table_standby_replicas=0,
            broker_session_timeout=settings.session_timeout_ms / 1000,
            broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            web_enabled=False,
            loop=asyncio.get_running_loop(),
            **security_of(settings).faust(),
        )
        # before any topic: faust makes its transport with the first (choreo.watchdog.transport)
        committed = kind_of(self.bootstrap, settings) == "kafka"
        app.transport = (CommittedTransport if committed else Transport)(
            app.conf.broker_consumer, app
        )
        raw: faust.Schema = faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

        def topic(name: str) -> faust.TopicT:
            return app.topic(name, schema=raw, partitions=partitions)

        self.control, self.dlq = topic(self.names.control), topic(self.names.dlq)
        self.table = app.Table(
            TABLE, default=None, partitions=partitions, key_type=bytes, value_type=bytes
        )
        app.agent(topic(self.names.hops), name="on_hops")(self._on_hops)
        app.agent(topic(self.names.state), name="on_state")(self._on_state)
        return app

    async def _on_hops(self, stream: faust.StreamT) -> None:
        await self._consume(stream.events(), decode_hop, self.policy.on_hop)

    async def _on_state(self, stream: faust.StreamT) -> None:
        await self._consume(stream.events(), decode_snapshot, self.policy.on_snapshot)

    async def _consume(
        self,
        stream: AsyncIterator[faust.EventT],
        parse: Callable[[bytes], R],
        apply: Callable[[TraceWatch, R, datetime], list[Answer]],
    ) -> None:
        async for event in stream:
            with telemetry.consume_span(event.message, group=self.app.conf.id):
                async with self._updating:
                    await self._handle(event, parse, apply)

    async def _handle(
        self,
        event: faust.EventT,
        parse: Callable[[bytes], R],
        apply: Callable[[TraceWatch, R, datetime], list[Answer]],
    ) -> None:
        """One record; whatever it raises (other than the broker's own errors, which faust
        retries) parks it on the dead-letter topic and the stream moves on."""
        try:
            await self._check(event, parse, apply)
        except KafkaError:
            raise
        except Exception as exc:
            log.exception("watchdog failed on a record", extra={"topic": event.message.topic})
            await self._dead_letter(event, f"watchdog error: {type(exc).__name__}: {exc}")

    async def _check(
        self,
        event: faust.EventT,
        parse: Callable[[bytes], R],
        apply: Callable[[TraceWatch, R, datetime], list[Answer]],
    ) -> None:
        state = event.message.topic == self.names.state
        if state and not event.value:
            return  # a tombstone: a delta a newer snapshot replaced (choreo.schemas.deltas)
        try:
            record = parse(event.value)
        except DecodeError as exc:
            await self._dead_letter(event, str(exc))
            return
        trace_id = record.trace_id
        key = trace_id.encode()
        # the state log's deltas are keyed <trace id>/<version>: their head is read the same
        if not (of_trace(event.key, trace_id) if state else event.key == key):
            await self._dead_letter(event, f"record key is not its trace id {trace_id!r}")
            return
        stored = self.table.get(key)
        watch = load_watch(stored) if stored is not None else TraceWatch(trace_id=trace_id)
        answers = apply(watch, record, datetime.now(UTC))
        await self._answer(trace_id, answers)
        self.table[key] = dump_watch(watch)

    async def _answer(self, trace_id: str, answers: list[Answer]) -> None:
        for record in answers:
            await self._send(self.control, trace_id.encode(), encode(record))
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

    async def _dead_letter(self, event: faust.EventT, reason: str) -> None:
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
        await self._send(self.dlq, msg.key, self.limit.dead_letter(letter), list(msg.headers or ()))
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

    @staticmethod
    async def _send(
        target: faust.TopicT, key: bytes | None, value: bytes, headers: Any = None
    ) -> None:
        # verdicts join the trace of the hop record that caused them
        pending = await target.send(key=key, value=value, headers=telemetry.inject(headers or ()))
        await pending
