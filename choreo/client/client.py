"""``choreo.Client``: submit tasks to a running mesh and read what it did, from Python.

An async client for any mesh on any broker, the one way in for Python code: the ``choreo``
command line, the test suite and the benchmarks use it too. It owns one producer and one
reader (a consumer with no group), started in ``__aenter__`` and stopped in reverse in
``__aexit__``; a second consumer follows the results topic from the first ``wait`` on, and an
admin client asks for consumer groups from the first ``ensure_running`` on. Nothing it does
joins a consumer group or commits an offset: it never disturbs the mesh it reads.

Modelled on httpx's ``AsyncClient`` (an async context manager owning its connections, a
client that is closed stays closed) and aiokafka's start/stop discipline.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, TypeVar, overload

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from choreo.client import _doctor, _escalations, _groups, _running, _traces
from choreo.client._doctor import Check
from choreo.client._follower import ResultFollower
from choreo.client._reader import Reader, decoded
from choreo.client.errors import (
    DeadLetterNotFound,
    ResultTimeout,
    TraceNotFound,
    VersionNotFound,
)
from choreo.client.reports import (
    Admission,
    AgentGroup,
    DeadLetterEntry,
    Replay,
    Submission,
    Trace,
    TraceBudget,
    TracePage,
)
from choreo.kafka import acl
from choreo.kafka.blobs import BlobReader
from choreo.kafka.clients import kind_of, make_consumer, make_producer
from choreo.kafka.security import make_admin, security_of, start
from choreo.keeper.replay import compare, history
from choreo.local.announce import resolve
from choreo.observe import telemetry
from choreo.observe.settings import Settings
from choreo.schemas import (
    Budget,
    ControlVerdict,
    DeadLetter,
    Envelope,
    Escalation,
    HopRecord,
    Record,
    Snapshot,
    StateConflict,
    Task,
    TerminalResult,
    encode,
)
from choreo.schemas.blobs import refs_in
from choreo.schemas.deltas import StateLog
from choreo.schemas.ids import new_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh

R = TypeVar("R", bound=Record)
#: A mesh spec, or the path of its YAML file.
MeshLike = MeshSpec | str | os.PathLike[str]

#: Seconds ``ensure_running`` waits, by default, for the services of a mesh just started to
#: join their consumer groups before it says the mesh is not running.
JOIN_S = 60.0
#: Traces sent while the results follower ran whose results it keeps for a later ``wait``;
#: past this many, the oldest are looked up on the topic when waited for instead.
_KEPT_WAITS = 10_000


class Client:
    """An async client of the mesh running on ``bootstrap`` under topic ``prefix``.

    ::

        async with Client("127.0.0.1:9092", prefix="choreo") as client:
            trace_id = await client.submit("Write about event sourcing")
            result = await client.wait(trace_id, timeout_s=60)

    ``bootstrap`` and ``prefix`` default as the ``choreo`` commands resolve them
    (choreo.local.announce.resolve): ``KAFKA_BOOTSTRAP_SERVERS`` and ``CHOREO_TOPIC_PREFIX``,
    else those of a ``choreo up`` running from the current folder, else no broker (an error)
    and the prefix ``choreo``. ``settings`` (default: from the environment) tunes the Kafka
    clients. A client opens once; ``close`` (or leaving the ``async with``) is idempotent.

    Raises (at construction):
        choreo.local.announce.NoBrokerAddress: no broker address given, set or announced.
        ValueError: ``prefix`` is not a valid topic prefix.
    """

    def __init__(
        self,
        bootstrap: str | None = None,
        *,
        prefix: str | None = None,
        settings: Settings | None = None,
        client_id: str = "choreo-client",
    ) -> None:
        self.bootstrap, self.settings = resolve(bootstrap, prefix, settings)
        #: The mesh's topic names under the prefix.
        self.topics = Topics(self.settings.topic_prefix)
        self._client_id = client_id
        #: How its Kafka clients authenticate (choreo.kafka.security), from ``settings``.
        self.security = security_of(self.settings)
        self._state = "new"
        self._stack = AsyncExitStack()
        self._producer: AIOKafkaProducer | None = None
        self._reader: Reader | None = None
        self._follower: ResultFollower | None = None
        self._admin: AIOKafkaAdminClient | None = None
        #: Fetches state values by reference (choreo.kafka.blobs); made on open.
        self._blobs: BlobReader | None = None
        self._starting = asyncio.Lock()
        self._kept: OrderedDict[str, asyncio.Future[TerminalResult]] = OrderedDict()

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        """Start the producer and the reader; on any failure, stop what started, and raise.

        Raises:
            RuntimeError: the client was opened before.
            aiokafka.errors.KafkaConnectionError: no broker answers at ``bootstrap``.
            choreo.errors.BrokerRefused: the broker refused this client's credentials or
                certificate (the message says which).
        """
        if self._state != "new":
            raise RuntimeError("a Client opens once: make a new one")
        self._state = "open"
        try:
            # asked off the loop: the first answer blocks, and the consumers' tuning needs it
            kind = await asyncio.to_thread(kind_of, self.bootstrap, self.settings)
            self.settings = self.settings.model_copy(update={"broker_kind": kind})
            # idempotent where the broker can be: a task submitted while a partition leader
            # is lost must not be written twice by the producer's own retry
            producer = make_producer(
                self.bootstrap, self._client_id, security=self.security, idempotent=kind == "kafka"
            )
            self._stack.push_async_callback(producer.stop)  # safe after a failed start
            await start(producer, self.bootstrap, self.security)
            consumer = self._consumer()
            self._stack.push_async_callback(consumer.stop)
            await consumer.start()
            self._blobs = BlobReader(self.bootstrap, self.settings, f"{self._client_id}-blobs")
            self._stack.push_async_callback(self._blobs.close)
        except BaseException:
            await self.close()
            raise
        self._producer, self._reader = producer, Reader(consumer)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop everything the client started, in reverse order; idempotent. A ``wait`` still
        running raises ``RuntimeError``."""
        self._state = "closed"
        self._producer = self._reader = self._follower = self._admin = None
        self._kept.clear()
        await self._stack.aclose()

    def _consumer(self) -> AIOKafkaConsumer:
        return make_consumer(
            self.bootstrap, self.settings, group_id=None, client_id=self._client_id
        )

    def _open(self) -> tuple[AIOKafkaProducer, Reader]:
        if self._producer is None or self._reader is None:
            raise RuntimeError(
                "the client is not open: use it inside `async with Client(...)`"
                if self._state == "new"
                else "the client is closed"
            )
        return self._producer, self._reader

    # -- submitting ------------------------------------------------------------------------

    async def submit(
        self,
        task: Task | str,
        *,
        trace_id: str | None = None,
        budget: Budget | None = None,
        metadata: dict[str, Any] | None = None,
        mesh: MeshLike | None = None,
    ) -> str:
        """Submit a task; return its trace id (``send`` says where it landed, too).

        ``task`` is the input text, or a whole ``Task`` (then give ``trace_id``, ``budget`` and
        ``metadata`` in it, not here). ``trace_id`` defaults to a new random id (an id already
        used is refused by the keeper: see ``admission``); ``budget`` overrides the mesh's
        limits for this trace; ``metadata`` travels with the trace. With ``mesh`` (a spec or
        its path), first check that this mesh is the one running (``ensure_running``).

        Raises:
            MeshNotRunning: with ``mesh``, that mesh does not run under the prefix.
            TypeError: a ``Task`` with keyword fields too.
            aiokafka.errors.KafkaError: the broker did not take the record.
        """
        sent = await self.send(task, trace_id=trace_id, budget=budget, metadata=metadata, mesh=mesh)
        return sent.trace_id

    async def send(
        self,
        task: Task | str,
        *,
        trace_id: str | None = None,
        budget: Budget | None = None,
        metadata: dict[str, Any] | None = None,
        mesh: MeshLike | None = None,
    ) -> Submission:
        """``submit``, returning where the task landed (topic, partition, offset).

        The send is the root span of the task's OpenTelemetry trace (or a child of the
        caller's current span): its ``traceparent`` header is what every later step continues.
        Raises as ``submit`` does.
        """
        producer, _ = self._open()
        if mesh is not None:
            await self.ensure_running(mesh)
        record, key = _task(task, trace_id, budget, metadata)
        topic = self.topics.tasks
        follower = self._follower  # running now: it will see this task's result
        with telemetry.produce_span(topic, key) as span:
            meta = await producer.send_and_wait(
                topic, encode(record), key=key.encode(), headers=telemetry.inject()
            )
            span.set_attributes(
                {
                    "messaging.destination.partition.id": str(meta.partition),
                    "messaging.kafka.offset": meta.offset,
                }
            )
        if follower is not None:
            self._keep(follower, key)
        return Submission(key, topic, meta.partition, meta.offset)

    async def admission(self, sent: Submission, timeout_s: float = 30.0) -> Admission:
        """Whether the keeper admitted ``sent`` or refused it (a dead letter naming it, with
        the keeper's reason), asking for up to ``timeout_s`` seconds; ``unknown`` after that
        (is the keeper running?)."""
        _, reader = self._open()
        return await _running.admission(reader, self.topics, sent, timeout_s)

    async def ensure_running(self, mesh: MeshLike, join_s: float = JOIN_S) -> None:
        """Check that ``mesh`` (a spec or its path) runs here: every topic it needs exists under
        the prefix, and its keeper and every agent have a live consumer (waiting up to
        ``join_s`` seconds for services just started to join).

        Raises:
            MeshNotRunning: the message names what is missing and how to start the mesh.
            choreo.spec.errors.SpecError: the spec file is invalid.
        """
        _, reader = self._open()
        spec = _spec(mesh)
        admin = await self._admin_client()
        await _running.ensure_running(reader, admin, spec, self.topics, self.bootstrap, join_s)

    # -- results ---------------------------------------------------------------------------

    async def result(self, trace_id: str) -> TerminalResult | None:
        """The trace's terminal record now, or ``None`` (it runs, or there is no such trace)."""
        _, reader = self._open()
        found = await reader.typed(self.topics.results, trace_id, TerminalResult, missing_ok=True)
        return found[0] if found else None

    async def wait(self, trace_id: str, timeout_s: float) -> TerminalResult:
        """The trace's terminal record, waiting up to ``timeout_s`` seconds for it.

        A result already written is looked up once; one written later reaches the wait a fetch
        after it is written (one consumer follows the results topic for every wait).

        Raises:
            ResultTimeout: (a ``TimeoutError``) no terminal record within ``timeout_s``.
        """
        self._open()
        follower = await self._results()
        future = self._kept.pop(trace_id, None)
        lookup = future is None  # a kept wait has seen everything since its task was sent
        if future is None:
            future = follower.watch(trace_id)
        window = asyncio.timeout(timeout_s)
        try:
            async with window:
                if lookup and (found := await self.result(trace_id)) is not None:
                    return found
                return await future
        except TimeoutError:
            if not window.expired():
                raise
            raise ResultTimeout(trace_id, timeout_s) from None
        finally:
            follower.forget(trace_id, future)

    def _keep(self, follower: ResultFollower, trace_id: str) -> None:
        """Watch for the result of a task just sent, for a later ``wait``."""
        future = self._kept[trace_id] = follower.watch(trace_id)
        future.add_done_callback(_seen)  # maybe never waited for: its error is no news
        while len(self._kept) > _KEPT_WAITS:
            old, future = self._kept.popitem(last=False)
            follower.forget(old, future)

    async def _results(self) -> ResultFollower:
        async with self._starting:
            if self._follower is None:
                follower = ResultFollower(self._consumer(), self.topics.results)
                self._stack.push_async_callback(follower.stop)
                await follower.start()
                self._follower = follower
            return self._follower

    async def _admin_client(self) -> AIOKafkaAdminClient:
        async with self._starting:
            if self._admin is None:
                admin = make_admin(self.bootstrap, self.security, client_id=self._client_id)
                self._stack.push_async_callback(admin.close)
                await admin.start()
                self._admin = admin
            return self._admin

    # -- reading a trace -------------------------------------------------------------------

    async def trace(self, trace_id: str) -> Trace:
        """Everything the mesh wrote about the trace (what ``choreo trace`` shows): its hop
        records, outbox steps, results, verdicts, state conflicts, escalations and snapshots.

        Raises:
            TraceNotFound: the trace has no hop and no result record (one just admitted has
                taken no step yet: ``state`` shows it), or the mesh's topics do not exist.
        """
        _, reader = self._open()
        topics = self.topics
        hops = await reader.typed(topics.hops, trace_id, HopRecord)
        results = await reader.typed(topics.results, trace_id, TerminalResult, missing_ok=True)
        if not hops and not results:
            raise TraceNotFound(f"no hop or result record of trace {trace_id!r}")
        state = await reader.trace(topics.state, trace_id, missing_ok=True, deltas=True)
        snapshots = [s for r in state if r.key == trace_id.encode() and (s := decoded(r, Snapshot))]
        return Trace(
            trace_id=trace_id,
            hops=hops,
            steps=await reader.typed(topics.outbox, trace_id, Envelope, missing_ok=True),
            results=results,
            verdicts=await reader.typed(topics.control, trace_id, ControlVerdict, missing_ok=True),
            conflicts=await reader.typed(
                topics.conflicts, trace_id, StateConflict, missing_ok=True
            ),
            escalations=await reader.typed(
                topics.escalations, trace_id, Escalation, missing_ok=True
            ),
            snapshots=snapshots,
            snapshot=await self._with_values(StateLog.read(state).state(trace_id)),
        )

    @overload
    async def _with_values(self, snapshot: Snapshot) -> Snapshot: ...
    @overload
    async def _with_values(self, snapshot: None) -> None: ...
    async def _with_values(self, snapshot: Snapshot | None) -> Snapshot | None:
        """``snapshot`` with its values by reference fetched and verified (choreo.kafka.blobs).

        Raises:
            choreo.schemas.blobs.BlobMismatch: a chunk is missing or does not match its hash.
        """
        if snapshot is None or self._blobs is None or not any(refs_in(snapshot.fields)):
            return snapshot
        return msgspec.structs.replace(snapshot, fields=await self._blobs.state(snapshot.fields))

    async def hops(self, trace_id: str) -> list[HopRecord]:
        """The trace's hop records (one per step the keeper folded), in log order.

        Raises:
            TraceNotFound: the hops topic does not exist.
        """
        return await self.read(self.topics.hops, trace_id, HopRecord)

    async def steps(self, trace_id: str) -> list[Envelope]:
        """Every step record agents wrote to the outbox for the trace, folded or not, and the
        keeper's own entries, in log order.

        Raises:
            TraceNotFound: the outbox topic does not exist.
        """
        return await self.read(self.topics.outbox, trace_id, Envelope)

    async def read(self, topic: str, trace_id: str, record_type: type[R]) -> list[R]:
        """The trace's records on ``topic`` (a full name, e.g. ``client.topics.control``) that
        decode as ``record_type``, in log order; others are skipped and logged.

        Raises:
            TraceNotFound: the topic does not exist.
        """
        _, reader = self._open()
        return await reader.typed(topic, trace_id, record_type)

    async def records(self, topic: str, trace_id: str) -> list[ConsumerRecord[bytes, bytes]]:
        """The trace's raw records on ``topic``, in log order: for what the typed readers do
        not show (offsets, headers, bytes that do not decode).

        Raises:
            TraceNotFound: the topic does not exist.
        """
        _, reader = self._open()
        return await reader.trace(topic, trace_id)

    # -- state -----------------------------------------------------------------------------

    async def state(
        self, trace_id: str, at: int | None = None, mesh: MeshLike | None = None
    ) -> Snapshot:
        """The trace's state: the newest snapshot on the state topic (its values by
        reference fetched, choreo.kafka.blobs), or with ``at`` the state at that version (from
        1), rebuilt by replaying the outbox under ``mesh`` (the spec or its path, as it ran)
        with choreo.keeper.replay.

        Raises:
            TraceNotFound: no snapshot (or, with ``at``, no outbox record) of the trace.
            choreo.schemas.blobs.BlobMismatch: a value by reference is missing or does not
                match its hash.
            VersionNotFound: the trace has no version ``at``; the message says which it has.
            ValueError: ``at`` without ``mesh``.
        """
        if at is None:
            _, reader = self._open()
            topic = self.topics.state
            found = StateLog.read(await reader.trace(topic, trace_id, deltas=True)).state(trace_id)
            if found is None:
                raise TraceNotFound(f"no snapshot of trace {trace_id!r} on {topic}")
            return await self._with_values(found)
        if mesh is None:
            raise ValueError("the state at a version replays the outbox: give mesh=SPEC")
        versions = await self.history(trace_id, mesh)
        if not 1 <= at <= len(versions):
            raise VersionNotFound(f"trace {trace_id} has versions 1..{len(versions)}, not {at}")
        return versions[at - 1]

    async def history(self, trace_id: str, mesh: MeshLike) -> list[Snapshot]:
        """Every version of the trace's state, rebuilt from the outbox under ``mesh`` (the spec
        or its path): index ``n - 1`` holds version ``n``.

        Raises:
            TraceNotFound: the trace has no outbox record (or the outbox does not exist).
        """
        _, reader = self._open()
        spec = _spec(mesh)
        records = await reader.trace(self.topics.outbox, trace_id)
        versions = history(spec, self.topics, records, trace_id)
        if not versions:
            raise TraceNotFound(f"no outbox record of trace {trace_id!r}")
        return versions

    async def budget(self, trace_id: str) -> TraceBudget:
        """The trace's budget and what it has used, from its newest snapshot.

        Raises:
            TraceNotFound: no snapshot of the trace.
        """
        snapshot = await self.state(trace_id)
        return TraceBudget(
            trace_id=snapshot.trace_id,
            status=snapshot.status,
            version=snapshot.version,
            budget=snapshot.budget,
            used=snapshot.totals,
            elapsed_s=(snapshot.updated_at - snapshot.admitted_at).total_seconds(),
        )

    async def replay(self, mesh: MeshLike) -> Replay:
        """Rebuild every trace from the outbox in a fresh keeper (choreo.keeper.replay) under
        ``mesh`` (the spec or its path) and compare each with its live snapshot.

        The live snapshots are read before the outbox, so a mesh still running shows no steps
        folded after the snapshot was read as differences.
        """
        _, reader = self._open()
        spec = _spec(mesh)
        live = {
            trace_id: await self._with_values(snapshot)
            for trace_id, snapshot in StateLog.read(await reader.topic(self.topics.state))
            .latest()
            .items()
        }
        outbox = await reader.topic(self.topics.outbox)
        return Replay(records=len(outbox), comparisons=compare(spec, self.topics, outbox, live))

    # -- escalations and dead letters ------------------------------------------------------

    async def escalations(self) -> list[Escalation]:
        """Every escalation (halted traces handed to a person) in its latest state, oldest
        first: ``open``, ``resumed`` (with its continuation trace) or ``closed``."""
        _, reader = self._open()
        return _escalations.current(await reader.topic(self.topics.escalations))

    async def resume(self, escalation_id: str, guidance: str) -> Escalation:
        """Resume an open escalation: a new trace starts from the halted trace's last state,
        with ``guidance`` added (field ``guidance``) and a fresh budget, and points back to it.
        Returns the escalation as resumed; ``continuation_trace_id`` is the new trace.

        Raises:
            EscalationError: no such escalation, or it is no longer open.
            TraceNotFound: the halted trace has no snapshot.
        """
        producer, _ = self._open()
        escalation = _escalations.still_open(await self.escalations(), escalation_id)
        halted = await self.state(escalation.trace_id)
        task, updated = _escalations.resumed(escalation, halted, guidance)
        await self.send(task)
        await self._record(producer, updated)
        return updated

    async def close_escalation(self, escalation_id: str) -> Escalation:
        """Close an open escalation without resuming its trace; return it as closed.

        Raises:
            EscalationError: no such escalation, or it is no longer open.
        """
        producer, _ = self._open()
        escalation = _escalations.still_open(await self.escalations(), escalation_id)
        updated = _escalations.closed(escalation)
        await self._record(producer, updated)
        return updated

    async def _record(self, producer: AIOKafkaProducer, escalation: Escalation) -> None:
        await producer.send_and_wait(
            self.topics.escalations, encode(escalation), key=escalation.trace_id.encode()
        )

    async def dlq(self, trace_id: str | None = None) -> list[DeadLetterEntry]:
        """The records the mesh refused (dead letters), oldest first, each with its id
        (``PARTITION:OFFSET``) and the refusing consumer's reason; with ``trace_id``, only those
        keyed by it. Records on the topic that are not dead letters are skipped."""
        _, reader = self._open()
        found = []
        for record in await reader.topic(self.topics.dlq):
            letter = decoded(record, DeadLetter)
            if letter is not None and (trace_id is None or letter.key == trace_id):
                found.append(DeadLetterEntry(f"{record.partition}:{record.offset}", letter))
        return sorted(found, key=lambda entry: (entry.letter.created_at, entry.id))

    async def requeue(self, letter_id: str, value: bytes | None = None) -> Submission:
        """Send dead letter ``letter_id`` (``PARTITION:OFFSET``, as ``dlq`` lists it) back to
        the topic it was refused from, keyed as it was: its original bytes, or ``value`` (the
        record fixed by hand). The consumer that refused it reads it again as a new record;
        the dead letter stays on its topic. Returns where it landed.

        Raises:
            DeadLetterNotFound: no dead letter ``letter_id``.
        """
        producer, _ = self._open()
        chosen = {e.id: e.letter for e in await self.dlq()}.get(letter_id)
        if chosen is None:
            raise DeadLetterNotFound(
                f"no dead letter {letter_id!r} (ids are PARTITION:OFFSET, as `choreo dlq` lists)"
            )
        key = chosen.key.encode() if chosen.key is not None else None
        meta = await producer.send_and_wait(
            chosen.topic, chosen.original if value is None else value, key=key
        )
        return Submission(chosen.key or "", chosen.topic, meta.partition, meta.offset)

    # -- the mesh at a glance --------------------------------------------------------------

    async def traces(
        self,
        *,
        status: str | None = None,
        agent: str | None = None,
        text: str | None = None,
        offset: int = 0,
        limit: int | None = 50,
    ) -> TracePage:
        """The traces on the broker, newest admitted first, filtered and paged: ``status``
        (``running``, ``completed``, ``failed``, ``halted``), ``agent`` (took a step),
        ``text`` (part of the trace id, last agent or reason, any case); ``limit=None`` for
        all. Reads the state and results topics whole, decoding no state field's value."""
        _, reader = self._open()
        summaries = _traces.summaries(
            await reader.topic(self.topics.state), await reader.topic(self.topics.results)
        )
        return TracePage.of(
            summaries, status=status, agent=agent, text=text, offset=offset, limit=limit
        )

    async def groups(self, mesh: MeshLike) -> list[AgentGroup]:
        """Each agent of ``mesh`` (a spec or its path) as it runs here: the event types it
        subscribes to, its live replicas (members of its consumer group) and its lag (records
        on its topics not yet committed by the group), in the spec's order."""
        _, reader = self._open()
        admin = await self._admin_client()
        return await _groups.agent_groups(reader, admin, _spec(mesh), self.topics)

    async def positions(self) -> dict[str, int]:
        """How many records each topic the console shows holds now (the sum of its
        partitions' end offsets; 0 for a topic that does not exist): when a number grows,
        something happened. Keys: the full topic names."""
        _, reader = self._open()
        names = [
            self.topics.state,
            self.topics.results,
            self.topics.hops,
            self.topics.escalations,
            self.topics.dlq,
        ]
        ends = await reader.ends(*names)
        return {
            name: sum(end for part, end in ends.items() if part.topic == name) for name in names
        }

    # -- the cluster: least privilege and a check-up ---------------------------------------

    async def grant(
        self, mesh: MeshLike, principals: dict[str, str], *, watchdog: bool = True
    ) -> int:
        """Create, through the admin API, the ACLs each service of ``mesh`` needs
        (choreo.kafka.acl.mesh_acls) for the services named in ``principals`` (service name,
        as ``choreo acl`` prints it → principal, ``User:keeper``); return how many rules.

        Raises:
            KeyError: a service name the mesh does not have.
            aiokafka.errors.ClusterAuthorizationFailedError: this client may not alter ACLs.
        """
        rules = acl.mesh_acls(_spec(mesh), self.topics, watchdog=watchdog)
        if unknown := sorted(set(principals) - set(rules)):
            raise KeyError(
                f"no service {', '.join(unknown)} in the mesh (it has {', '.join(rules)})"
            )
        return await acl.apply(await self._admin_client(), principals, rules)

    async def doctor(self, mesh: MeshLike, principals: dict[str, str] | None = None) -> list[Check]:
        """Whether the cluster gives ``mesh`` what it needs, one :class:`Check` a row: the
        broker's kind, its topics, whether the services named in ``principals`` (service →
        principal, as for :meth:`grant`) hold their ACLs (when the cluster lists them),
        transactions, the record limit, replication. Authentication worked: the client is
        open."""
        kind = self.settings.broker_kind  # asked of the broker when the client opened
        tuning = Check(
            "broker",
            "ok" if kind == "kafka" else "warn",
            "Apache Kafka: transactions, exactly-once"
            if kind == "kafka"
            else "not recognised as Apache Kafka: at-least-once (CHOREO_BROKER_KIND=kafka "
            "where it has transactions)",
        )
        return [tuning] + await _doctor.examine(
            await self._admin_client(),
            self.bootstrap,
            self.security,
            _spec(mesh),
            self.topics,
            principals or {},
        )


def _seen(future: asyncio.Future[TerminalResult]) -> None:
    """Mark a future's error as retrieved, so asyncio does not log it when it is dropped."""
    if not future.cancelled():
        future.exception()


def _spec(mesh: MeshLike) -> MeshSpec:
    return mesh if isinstance(mesh, MeshSpec) else load_mesh(os.fspath(mesh))


def _task(
    task: Task | str,
    trace_id: str | None,
    budget: Budget | None,
    metadata: dict[str, Any] | None,
) -> tuple[Task, str]:
    """The task to send and its trace id (a new one unless given); never the caller's own
    ``Task`` object changed."""
    if isinstance(task, Task):
        if trace_id is not None or budget is not None or metadata is not None:
            raise TypeError("give trace_id, budget and metadata inside the Task, not beside it")
        record = task
    else:
        record = Task(input=task, trace_id=trace_id, budget=budget, metadata=metadata or {})
    if record.trace_id is None:
        record = msgspec.structs.replace(record, trace_id=new_id())
    return record, record.trace_id or ""
