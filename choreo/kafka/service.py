"""Services as objects (``Service``), and the skeleton the keeper and every agent fill.

A ``Service`` is an async context manager over the resources it runs on, started on enter
and stopped in reverse on exit through one ``AsyncExitStack``; ``run(stop)`` serves in
between. Every service of the mesh is one (the watchdog, the sandbox and the model server
too), so any number of them run in one event loop, each owning exactly what it started, and
choreo.kafka.runner makes any of them a process.

A ``ConsumerService`` is one member of a consumer group with the Kafka clients such a
service needs: a producer, a consumer subscribed to its inputs with the service's rebalance
listener, the transactional producers of choreo.kafka.transactions on a broker that has
transactions, the dead-letter path (choreo.kafka.clients.DeadLetters) and the lag gauge.

Entering it starts the producer, then what the service itself holds (``_open``: the keeper's
record limit, an agent's behaviour with its model clients and MCP sessions), then the
consumer; leaving stops them in reverse, and a start that fails half-way stops what it had
started::

    async with KeeperService(spec, bootstrap, settings) as keeper:
        await keeper.run(stop)  # until ``stop`` is set; then drained, then stopped

The loop (``run``) is each service's own: the keeper transitions a batch at a time, an agent
runs steps concurrently; both back off through choreo.kafka.clients.Outage. Process concerns
(signals, logs, exit codes) belong to choreo.kafka.runner alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from choreo.kafka.clients import DeadLetters, make_consumer, make_producer
from choreo.kafka.security import security_of, start
from choreo.kafka.transactions import Transactions, exactly_once
from choreo.observe import metrics
from choreo.observe.settings import Settings
from choreo.schemas.topics import Topics


class Service(ABC):
    """A service as an object: an async context manager over the resources it runs on.

    ``__aenter__`` runs ``_acquire``, which starts each resource and pushes its stop onto an
    ``AsyncExitStack``; a start that raises unwinds the stack, so whatever had started stops
    again before the error leaves. ``__aexit__`` (or ``aclose``, which a second call leaves
    alone) stops everything in reverse order. ``run(stop)`` serves in between. A service is
    started once: build another to start again.
    """

    _stack: contextlib.AsyncExitStack | None = None
    _entered = False

    @abstractmethod
    async def _acquire(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the resources, pushing each one's stop onto ``stack``."""

    @abstractmethod
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then finish what is in hand."""

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError(f"{type(self).__name__} is started once; build another")
        self._entered = True
        async with contextlib.AsyncExitStack() as stack:
            await self._acquire(stack)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop whatever was started, in reverse order; a second call does nothing."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()


class ConsumerService(Service):
    """A consumer-group member's clients, started and stopped as one; subclasses add the loop.

    ``group`` is the consumer group (and the transactional ids' stem), ``client_id`` names
    the clients to the broker, ``inputs`` are the topics read, ``consumer_name`` labels its
    dead letters and their metric; ``max_records`` bounds one poll. Build it inside a running
    event loop (aiokafka's clients bind to it) and enter it (a producer built and never
    stopped is reported by aiokafka as unclosed); ``run`` only between enter and exit.
    """

    def __init__(
        self,
        bootstrap: str,
        settings: Settings,
        *,
        group: str,
        client_id: str,
        inputs: list[str],
        consumer_name: str,
        max_records: int | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.group = group
        self.inputs = inputs
        #: How its clients authenticate: its own principal when its settings name one.
        self.security = security_of(settings)
        self.producer = make_producer(bootstrap, client_id, security=self.security)
        #: Built on enter, just before it starts (so one that never starts never exists).
        self.consumer: AIOKafkaConsumer
        self.lag: metrics.ConsumerLag
        self._client_id = client_id
        self._max_records = max_records
        self.dead_letters = DeadLetters(self.producer, self.topics.dlq, consumer_name)
        #: On a broker with transactions, the transactional producers of the owned inputs.
        self.transactions: Transactions | None = (
            Transactions(bootstrap, group, client_id, self.security)
            if exactly_once(bootstrap, settings)
            else None
        )

    @abstractmethod
    def rebalance_listener(self) -> ConsumerRebalanceListener:
        """What the service does when partitions are assigned or revoked."""

    @abstractmethod
    async def _open(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the service's own resources, pushing each one's stop onto ``stack``; they
        start after the producer and before the consumer, and stop in reverse."""

    async def _acquire(self, stack: contextlib.AsyncExitStack) -> None:
        """Start the producer, the service's own resources, then the consumer."""
        # Each client's stop is pushed before its start: aiokafka's clients need a stop even
        # after a start that failed half-way (its connections, its unclosed-client warning).
        stack.push_async_callback(self.producer.stop)
        await start(self.producer, self.bootstrap, self.security)
        if self.transactions is not None:
            stack.push_async_callback(self.transactions.close)
        await self._open(stack)
        self.consumer = make_consumer(
            self.bootstrap,
            self.settings,
            group_id=self.group,
            client_id=self._client_id,
            max_records=self._max_records,
        )
        self.lag = metrics.ConsumerLag(self.consumer, self.group)
        stack.push_async_callback(self.consumer.stop)
        self.consumer.subscribe(self.inputs, listener=self.rebalance_listener())
        await self.consumer.start()

    async def committed(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The group's committed offset of each of ``partitions`` (None where none is)."""
        return {tp: await self.consumer.committed(tp) for tp in partitions}

    def seek(self, offsets: dict[TopicPartition, int | None]) -> None:
        """Read each partition on from ``offsets`` (the beginning where None); no await, so
        no record fetched from before it can be taken in between."""
        for tp, offset in offsets.items():
            self.consumer.seek(tp, 0 if offset is None else offset)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
