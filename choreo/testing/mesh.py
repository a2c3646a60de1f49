"""``Mesh``: a whole mesh spec running in one event loop, against a real broker, for tests.

The keeper, every agent (each replica a consumer-group member of its own) and, if asked, the
watchdog run as tasks of the caller's event loop: the services of choreo.kafka.service,
entered with ``async with`` exactly as their processes enter them. Every scripted model tier
is served from a thread of this process (choreo.model_server.server.ScriptedModel: real HTTP
on loopback, so the model client's retries, timeouts and accounting run for real), and the
sandbox service runs in the loop when an agent uses it. Their addresses go into a copy of the
spec (a tier's ``base_url``, a sandbox tool's ``url``), never into process-wide environment
variables, so several meshes run side by side in one process, each under a topic prefix of
its own on one broker.

Entering creates the mesh's topics, starts everything, and returns once every consumer group
has been given all its partitions, so a task submitted then is taken at once (a fresh group
joins in a few seconds; the watchdog, whose start waits for its join, starts meanwhile). A
service that ends before the mesh is stopped cancels what the entering task awaits and the
``async with`` raises ``ServiceFailed`` with the service's error, instead of a test waiting
for a result that cannot come; anyio's and asyncio's task groups treat a failed child the
same way. Leaving stops every service (agents finish and commit their steps), then closes
what each started, in reverse order.

In the spirit of Temporal's test environment (a real server, no ceremony) and of
openai-agents' tests (the real model interface, a scripted model behind it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import time
from collections.abc import Awaitable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from aiokafka import TopicPartition

from choreo.agent.service import AgentService
from choreo.client import Client
from choreo.kafka.security import security_of
from choreo.kafka.service import ConsumerService, Service
from choreo.kafka.topics import ensure_topics
from choreo.keeper.service import KeeperService
from choreo.local import services  # noqa: F401  (registers the router and supervisor kinds)
from choreo.local.launch import SANDBOX_URL, uses_sandbox
from choreo.model_server.server import ScriptedModel
from choreo.models.client import env_var
from choreo.observe.settings import Settings
from choreo.sandbox.server import SandboxServer
from choreo.schemas.ids import new_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, ToolSpec, load_mesh
from choreo.testing.broker import shared_broker
from choreo.testing.errors import MeshNotReady, ServiceFailed
from choreo.testing.localmodel import LocalModel
from choreo.tools.sandbox.limits import SandboxLimits
from choreo.watchdog.app import WatchdogService

T = TypeVar("T")

#: Seconds between two looks at the consumers' assignments while entering.
_READY_POLL_S = 0.05
_prefixes = itertools.count(1)


def fresh_prefix() -> str:
    """A topic prefix no other mesh on the broker has: this process's id, a counter, and a
    random part (two test processes on one broker, or one after another, never meet)."""
    return f"test{os.getpid()}x{next(_prefixes)}x{new_id()[:6].lower()}"


class Mesh:
    """A mesh spec's services in the running event loop, on a real broker, for tests.

    ::

        async with choreo.testing.Mesh("examples/writer-editor/mesh.yaml") as mesh:
            trace_id = await mesh.client.submit("Write about event sourcing")
            result = await mesh.client.wait(trace_id, timeout_s=30)
            assert result.status == "completed"

    ``spec`` is a MeshSpec or the path of its YAML file. ``bootstrap`` is the broker's
    address; None means the test process's shared broker (choreo.testing.broker:
    ``KAFKA_BOOTSTRAP_SERVERS``, else a testcontainers Kafka where Docker answers, else the
    embedded broker), started on first use and stopped at exit. ``watchdog`` runs the mesh's
    watchdog too (its start waits for its group, a few seconds more). ``agents`` names the
    agents to run (default all; ``[]`` runs the keeper alone, for a test that plays the
    agents itself); ``keeper=False`` leaves the keeper out. ``settings`` tunes every service
    (default: from ``CHOREO_*`` variables); its topic prefix is replaced by ``prefix``, else by
    a fresh one. ``ready_s`` bounds the wait for the consumer groups on entering
    (``MeshNotReady`` past it). ``service_settings`` changes settings for one service, keyed
    ``keeper``, ``agent:<name>``, ``watchdog`` or ``client`` (the names of
    choreo.kafka.acl.mesh_acls): each its own Kafka principal, say
    (``{"keeper": {"sasl_username": "keeper", ...}}``).

    Entered, it holds: ``spec`` (the copy the services run, pointed at the servers this mesh
    started), ``source`` (the spec as given), ``path`` (its file, or None), ``bootstrap``,
    ``settings``, ``topics``, ``client`` (a choreo.client.Client of this mesh, open while the
    mesh runs), ``services`` (each service object by name: ``keeper``, ``writer-1``,
    ``watchdog``, ``model-scripted``, ``sandbox``), ``model_url(tier)`` and ``sandbox_url``.
    A mesh is entered once.

    Raises, from ``async with``: ``ServiceFailed`` when a service ends before the mesh is
    stopped (while entering, too); ``MeshNotReady``; the spec's ``SpecError``; and whatever
    a service's start raises (a handler that does not import: ``ImportPathError``).
    """

    def __init__(
        self,
        spec: MeshSpec | str | os.PathLike[str],
        bootstrap: str | None = None,
        *,
        watchdog: bool = False,
        agents: Iterable[str] | None = None,
        keeper: bool = True,
        settings: Settings | None = None,
        prefix: str | None = None,
        ready_s: float = 60.0,
        service_settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.path = None if isinstance(spec, MeshSpec) else Path(spec)
        self.source = spec if isinstance(spec, MeshSpec) else load_mesh(Path(spec))
        self.spec = self.source
        self._bootstrap = bootstrap
        self._watchdog = watchdog
        names = [a.name for a in self.source.agents] if agents is None else list(agents)
        for name in names:
            self.source.agent(name)  # a name the spec lacks raises here, before anything runs
        self._agents = names
        self._keeper = keeper
        base = settings if settings is not None else Settings()
        self.settings = base.model_copy(update={"topic_prefix": prefix or fresh_prefix()})
        self.topics = Topics(self.settings.topic_prefix)
        self._ready_s = ready_s
        self._service_settings = service_settings or {}
        self.services: dict[str, Service] = {}
        self.client: Client
        self._models: dict[str, str] = {}
        self.sandbox_url: str | None = None
        #: Each running service's task, and the event that stops it.
        self._tasks: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self._stack = contextlib.AsyncExitStack()
        self._entered = False
        self._stopping = False
        self._host: asyncio.Task[object] | None = None
        self._cancelled_host = False
        self._failure: ServiceFailed | None = None
        self._failed = asyncio.Event()

    @property
    def bootstrap(self) -> str:
        """The broker the mesh runs on (resolved on entering when none was given)."""
        if self._bootstrap is None:
            raise RuntimeError("the mesh has no broker before it is entered")
        return self._bootstrap

    @property
    def failure(self) -> ServiceFailed | None:
        """Why the mesh stopped on its own (a service ended), or None while all run."""
        return self._failure

    def model_url(self, tier: str) -> str:
        """The base URL (``http://127.0.0.1:PORT/v1``) this mesh serves scripted ``tier`` at.

        Raises ``KeyError`` for a tier that is not scripted or that a
        ``CHOREO_MODEL_<TIER>_BASE_URL`` variable points elsewhere."""
        return self._models[tier]

    # -- entering and leaving -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a Mesh is entered once; build another")
        self._entered = True
        self._host = asyncio.current_task()
        try:
            await self._start()
        except BaseException as exc:
            failure = self._take_failure()
            await self._close()
            if failure is not None:
                raise failure from failure.error
            raise exc
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        failure = self._take_failure()
        await self._close()
        if failure is not None:
            raise failure

    async def aclose(self) -> None:
        """Stop the services, then close what each started, in reverse; idempotent. A
        failure seen before is raised by leaving the ``async with`` (or ``guard``), not here."""
        await self._close()

    def _take_failure(self) -> ServiceFailed | None:
        """Stop watching, and give back the cancellation this mesh asked of its host task."""
        self._stopping = True
        if self._cancelled_host and self._host is not None:
            self._host.uncancel()
            self._cancelled_host = False
        return self._failure

    async def _close(self) -> None:
        self._stopping = True
        for _, stop in self._tasks.values():
            stop.set()
        await asyncio.gather(*(task for task, _ in self._tasks.values()), return_exceptions=True)
        await self._stack.aclose()

    async def stop_service(self, name: str) -> None:
        """Stop one service as SIGTERM stops its process, while the others run on: its
        ``run`` finishes what is in hand (an agent drains and commits), then it closes what
        it started. Raises what its ``run`` raised while stopping, and ``KeyError`` for a
        name that is not running (``services`` lists them)."""
        task, stop = self._tasks.pop(name)
        stop.set()
        try:
            await task
        finally:
            await self.services[name].aclose()

    async def _start(self) -> None:
        if self._bootstrap is None:
            self._bootstrap = (await asyncio.to_thread(shared_broker)).bootstrap
        self.spec = await self._serve(self.source)
        await ensure_topics(self.bootstrap, self.topics, self.spec, security_of(self.settings))
        self.client = await self._stack.enter_async_context(
            Client(self.bootstrap, settings=self._settings_of("client"))
        )
        members: dict[str, list[ConsumerService]] = {}
        starting: list[Awaitable[None]] = []
        if self._keeper:
            keeper = KeeperService(self.spec, self.bootstrap, self._settings_of("keeper"))
            members[keeper.group] = [keeper]
            starting.append(self._start_service("keeper", keeper))
        for name in self._agents:
            for replica in range(1, self.spec.agent(name).replicas + 1):
                settings = self._settings_of(f"agent:{name}")
                agent = AgentService(self.spec, name, self.bootstrap, settings)
                members.setdefault(agent.group, []).append(agent)
                starting.append(self._start_service(f"{name}-{replica}", agent))
        if self._watchdog:
            settings = self._settings_of("watchdog")
            watchdog = WatchdogService(self.spec, self.bootstrap, settings)
            starting.append(self._start_service("watchdog", watchdog))
        # at once: starting a consumer joins its group (seconds on the embedded broker), and
        # the watchdog's start returns only once its group is joined
        await _together(starting)
        await self._ready(members)

    def _settings_of(self, service: str) -> Settings:
        """The settings ``service`` runs with: the mesh's, changed as ``service_settings``
        says for it."""
        changes = self._service_settings.get(service)
        if not changes:
            return self.settings
        # validated, so a password given as text becomes a secret like the environment's
        return Settings.model_validate({**self.settings.model_dump(), **changes})

    async def _start_service(self, name: str, service: Service) -> None:
        self.services[name] = await self._stack.enter_async_context(service)
        self._run(name, service)

    async def _serve(self, spec: MeshSpec) -> MeshSpec:
        """Serve every scripted or locally served tier (unless a variable points it
        elsewhere) and, when an
        agent uses it, the sandbox; return ``spec`` pointed at them."""
        tiers = dict(spec.models)
        for name, tier in sorted(spec.models.items()):
            if os.environ.get(env_var(name, "BASE_URL")):
                continue
            model: ScriptedModel | LocalModel
            if tier.script is not None:
                model = await self._stack.enter_async_context(ScriptedModel(tier.script))
            elif tier.server is not None:
                model = await self._stack.enter_async_context(LocalModel(tier))
            else:
                continue
            self.services[f"model-{name}"] = model
            self._models[name] = model.url
            tiers[name] = tier.model_copy(update={"base_url": model.url})
        spec = spec.model_copy(update={"models": tiers})
        if not uses_sandbox(spec) or os.environ.get(SANDBOX_URL):
            return spec
        sandbox = SandboxServer(None, "127.0.0.1", 0, SandboxLimits())
        # entered, it serves (its run only announces its address, for a process's starter)
        self.services["sandbox"] = await self._stack.enter_async_context(sandbox)
        self.sandbox_url = sandbox.url
        agents = [
            agent.model_copy(
                update={
                    "tools": [
                        tool.model_copy(update={"url": sandbox.url})
                        if isinstance(tool, ToolSpec)
                        else tool
                        for tool in agent.tools
                    ]
                }
            )
            for agent in spec.agents
        ]
        return spec.model_copy(update={"agents": agents})

    async def _ready(self, members: dict[str, list[ConsumerService]]) -> None:
        """Return once each consumer group's members hold every partition of its inputs
        between them, each partition once, and every member that can have one has one."""
        deadline = time.monotonic() + self._ready_s
        while waiting := [group for group, held in members.items() if not _settled(held)]:
            if time.monotonic() > deadline:
                raise MeshNotReady(waiting, self._ready_s)
            await asyncio.sleep(_READY_POLL_S)  # polling in-process state, with a deadline

    # -- watching the services ------------------------------------------------------------

    def _run(self, name: str, service: Service) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop), name=f"choreo.testing: {name}")
        task.add_done_callback(functools.partial(self._ended, name))
        self._tasks[name] = (task, stop)

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        """A service's task ended: unless it was stopped, that is a failure."""
        if self._stopping or self._failure is not None or name not in self._tasks:
            return
        error = None if task.cancelled() else task.exception()
        self._failure = ServiceFailed(name, error)
        self._failed.set()
        if self._host is not None and not self._host.done():
            self._host.cancel(f"{name} of the mesh under test ended")
            self._cancelled_host = True

    async def guard(self, work: Awaitable[T]) -> T:
        """Await ``work``, unless a service of the mesh ends first: then ``work`` is
        cancelled and ``ServiceFailed`` raised. For work awaited outside the task that entered
        the mesh (which the mesh cancels itself); a SyncMesh guards every call with it."""
        if self._failure is not None:
            if asyncio.iscoroutine(work):
                work.close()
            raise self._failure
        waiting = asyncio.ensure_future(work)
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait([waiting, failed], return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the guard itself is cancelled: so is the work
            waiting.cancel()
            raise
        finally:
            failed.cancel()
        if waiting.done():
            return waiting.result()
        waiting.cancel()
        await asyncio.wait([waiting])  # let it unwind; its CancelledError is not ours
        assert self._failure is not None
        raise self._failure


async def _together(work: list[Awaitable[None]]) -> None:
    """Await all of ``work`` at once; if one raises, cancel the others, let them unwind, and
    raise its error."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _settled(members: list[ConsumerService]) -> bool:
    """True when ``members`` (one group's) hold every partition of their inputs, each once,
    and each member holds one where there are enough to go round."""
    consumer = members[0].consumer
    wanted: set[TopicPartition] = set()
    for topic in members[0].inputs:
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            return False
        wanted |= {TopicPartition(topic, p) for p in numbers}
    held = [member.consumer.assignment() for member in members]
    if sum(len(h) for h in held) != len(wanted) or set().union(*held) != wanted:
        return False
    return len(members) > len(wanted) or all(held)
