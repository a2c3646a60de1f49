"""Shared fixtures: one real broker per test session; meshes in this process, or as processes.

The broker comes from the project's one resolution order: ``KAFKA_BOOTSTRAP_SERVERS``, else a
testcontainers Kafka where a Docker engine answers, else the embedded broker
(choreo.testing.broker, shared with the examples' own tests). A mesh runs in this process
(``start_mesh``: choreo.testing, every service a task of one event loop) unless the test is
about processes: those are in tests/processes/ and start meshes with ``start_mesh_processes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from choreo.client import ResultTimeout, SyncClient
from choreo.kafka.broker import BrokerHandle, broker_kind
from choreo.local.launch import start_mesh as start_mesh_group
from choreo.local.processes import ProcessGroup
from choreo.models.client import env_var
from choreo.observe.settings import Settings, get_settings
from choreo.schemas import Envelope, HopRecord, Snapshot, Task, TerminalResult
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh
from choreo.testing import SyncMesh
from choreo.testing.broker import shared_broker
from choreo.testing.sync import close_all

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
T = TypeVar("T")
_prefixes = itertools.count(1)


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    interval: float = 0.2,
    message: str = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


def processes_mentioning(marker: str) -> list[int]:
    """Pids of this machine's processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry.name))
    return found


def processes_marked(variable: str, token: str) -> list[int]:
    """Pids of this user's processes whose environment variable ``variable`` holds ``token``
    as one of its space-separated words (children inherit it, whatever their session)."""
    prefix, wanted = f"{variable}=".encode(), token.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(
            item.startswith(prefix) and wanted in item[len(prefix) :].split() for item in environ
        ):
            found.append(int(entry.name))
    return found


#: Every process the suite starts inherits this run's id in this variable (a nested run adds
#: its own): what a SIGTERM to pytest uses to end them all, even those in sessions of their
#: own, which the parent-death signal (choreo.kafka.children) does not reach.
RUN_MARK = "CHOREO_TEST_RUNS"
_run = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def pytest_configure(config: pytest.Config) -> None:
    os.environ[RUN_MARK] = f"{os.environ.get(RUN_MARK, '')} {_run}".strip()
    signal.signal(signal.SIGTERM, _end_run)


def _end_run(signum: int, frame: object) -> None:
    """On SIGTERM: SIGKILL every process this run started (twice: one may be forking), then
    end as SIGTERM would have ended pytest."""
    for _ in range(2):
        for pid in processes_marked(RUN_MARK, _run):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


#: The fixtures that hand a test the session's broker (choreo.testing.plugin's, for the
#: examples' own tests, is the same broker).
BROKER_FIXTURES = {"broker", "choreo_broker"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker-only",
        action="store_true",
        help="run only the tests that talk to the session's broker (those using the `broker` "
        "fixture): the rest never touch a broker, so a second run on another broker only "
        "repeats them (CI runs them once)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--broker-only"):
        return
    keep = [item for item in items if BROKER_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


@pytest.fixture(autouse=True)
def _process_state_put_back() -> Iterator[None]:
    """Each test reads its own environment and leaves the process as it found it: settings are
    read once per process (``get_settings``), and ``choreo.cli.main`` configures logging and
    installs a SIGTERM handler, so a command run in-process would otherwise change the next
    test's settings, log handlers and signals."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sigterm = signal.getsignal(signal.SIGTERM)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    signal.signal(signal.SIGTERM, sigterm)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def broker() -> BrokerHandle:
    """The session's broker; choreo.testing's ``choreo_broker`` is the same one."""
    return shared_broker()


@pytest.fixture
def transactional(broker: BrokerHandle) -> BrokerHandle:
    """The session broker, when it has transactions (Apache Kafka); else the test skips."""
    if broker_kind(broker.bootstrap) != "kafka":
        pytest.skip(
            "exactly-once output needs broker transactions (Apache Kafka); the "
            "embedded broker has none, and there a killed service may write a record "
            "twice, which readers absorb by its id (docs/ARCHITECTURE.md)"
        )
    return broker


class RunningMesh:
    """A running mesh under its own topic prefix, read and written through a
    choreo.client.SyncClient (``client``): the face every mesh test uses, whether the mesh's
    services run in this process (``LocalMesh``) or as processes (``ProcessMesh``)."""

    spec: MeshSpec
    path: Path
    bootstrap: str
    settings: Settings

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_prefix)

    @property
    def client(self) -> SyncClient:
        raise NotImplementedError

    def run(self, coro: Any) -> Any:
        """Await ``coro`` and return what it gives."""
        return asyncio.run(coro)

    def submit(self, text: str, **fields: Any) -> str:
        return self.client.submit(Task(input=text, **fields))

    def result(self, trace_id: str, timeout: float = 90.0) -> TerminalResult:
        try:
            return self.client.wait(trace_id, timeout)
        except ResultTimeout:
            raise AssertionError(
                f"no result for {trace_id} within {timeout}s; ended services: {self.failed()}"
            ) from None

    def results(self, trace_id: str) -> list[TerminalResult]:
        return self.client.read(self.topics.results, trace_id, TerminalResult)

    def steps(self, trace_id: str, agent: str) -> list[Envelope]:
        """The records ``agent`` wrote to the outbox for the trace, folded or not."""
        return [r for r in self.client.steps(trace_id) if r.source == agent]

    def hops(self, trace_id: str) -> list[HopRecord]:
        """The trace's hop records in step order."""
        return sorted(self.client.hops(trace_id), key=lambda h: (h.hop, h.state_version))

    def snapshot(self, trace_id: str) -> Snapshot:
        """The trace's latest snapshot on the state topic."""
        return self.client.state(trace_id)

    def model_url(self, tier: str) -> str:
        """The base URL (``.../v1``) of the mesh's scripted model server of ``tier``."""
        raise NotImplementedError

    def failed(self) -> list[str]:
        """The services that ended on their own, with why."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> RunningMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """An environment for the ``choreo`` command to reach this mesh."""
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CHOREO_TOPIC_PREFIX": self.settings.topic_prefix,
        }


class LocalMesh(RunningMesh):
    """A mesh whose services run as tasks of one event loop in this process
    (choreo.testing.SyncMesh); a service that ends on its own fails the next call."""

    def __init__(self, running: SyncMesh, path: Path) -> None:
        self.running = running
        self.spec = running.spec
        self.path = path
        self.bootstrap = running.bootstrap
        self.settings = running.settings

    @property
    def client(self) -> SyncClient:
        return self.running.client

    def run(self, coro: Any) -> Any:
        """Await ``coro`` on the mesh's own loop."""
        return self.running.run(coro)

    def model_url(self, tier: str) -> str:
        return self.running.model_url(tier)

    def failed(self) -> list[str]:
        failure = self.running.failure
        return [] if failure is None else [str(failure)]

    def stop_service(self, name: str) -> None:
        """Stop one service (``watchdog``, ``writer-1``) as SIGTERM would; the rest run on."""
        self.running.run(self.running.mesh.stop_service(name))

    def stop(self) -> None:
        """Stop the mesh: agents drain and commit, then every service closes."""
        self.running.close()


class ProcessMesh(RunningMesh):
    """A mesh whose services run as processes (choreo.local.launch.start_mesh)."""

    def __init__(
        self, spec: MeshSpec, path: Path, bootstrap: str, settings: Settings, group: ProcessGroup
    ) -> None:
        self.spec = spec
        self.path = path
        self.bootstrap = bootstrap
        self.settings = settings
        self.group = group
        self._client: SyncClient | None = None

    @property
    def client(self) -> SyncClient:
        """A client of this mesh, opened on first use and closed by ``stop``."""
        if self._client is None:
            self._client = SyncClient(self.bootstrap, settings=self.settings)
        return self._client

    def model_url(self, tier: str) -> str:
        return self.group.env[env_var(tier, "BASE_URL")]

    def failed(self) -> list[str]:
        return [f"{c.name}: {c.log_path.read_text()[-2000:]}" for c in self.group.failed()]

    def stop(self) -> None:
        """Stop the mesh's processes (idle services still poll the broker and cost CPU) and
        close its client."""
        self.group.stop()
        if self._client is not None:
            self._client.close()
            self._client = None


def _spec_file(mesh: Path | dict[str, Any], base_dir: Path | None, name: str) -> Path:
    """``mesh``'s file: the path given, or the dict written as ``base_dir/mesh-NAME.yaml``
    (next to its scripts, which it names relative to itself)."""
    if not isinstance(mesh, dict):
        return mesh
    assert base_dir is not None
    path = base_dir / f"mesh-{name}.yaml"
    path.write_text(yaml.safe_dump(mesh))
    return path


@pytest.fixture(scope="package")
def start_mesh(broker: BrokerHandle) -> Iterator[Callable[..., LocalMesh]]:
    """Start a mesh (path, or a spec dict written next to its scripts) in this process, under
    a fresh prefix, ready: every consumer holds its partitions (choreo.testing.Mesh).

    ``watchdog=True`` runs the watchdog too; ``agents`` names the agents to run (``[]``: the
    keeper alone); ``settings`` are choreo.observe.settings.Settings fields for every service.
    Stop a mesh when its tests are done (``mesh.stop()``, or ``with start(...) as mesh``);
    whatever is still running when the test package ends is stopped then.
    """
    meshes: list[LocalMesh] = []

    def start(
        mesh: Path | dict[str, Any],
        *,
        base_dir: Path | None = None,
        watchdog: bool = False,
        agents: list[str] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> LocalMesh:
        path = _spec_file(mesh, base_dir, f"local{next(_prefixes)}")
        running = SyncMesh(
            path,
            broker.bootstrap,
            watchdog=watchdog,
            agents=agents,
            settings=Settings(**{"session_timeout_ms": 6000, **(settings or {})}),
        )
        meshes.append(LocalMesh(running, path))
        return meshes[-1]

    yield start
    close_all([mesh.running for mesh in meshes])


@pytest.fixture
def start_test_mesh(start_mesh: Callable[..., LocalMesh]) -> Iterator[Callable[..., LocalMesh]]:
    """Like ``start_mesh``, for one test: its meshes stop when the test ends."""
    started: list[LocalMesh] = []

    def start(*args: Any, **options: Any) -> LocalMesh:
        started.append(start_mesh(*args, **options))
        return started[-1]

    yield start
    close_all([mesh.running for mesh in started])


@pytest.fixture(scope="module")
def writer_editor(start_mesh: Callable[..., LocalMesh]) -> Iterator[LocalMesh]:
    with start_mesh(EXAMPLES / "writer-editor" / "mesh.yaml") as mesh:
        yield mesh


@pytest.fixture(scope="package")
def start_mesh_processes(
    broker: BrokerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., ProcessMesh]]:
    """Start a mesh (path, or a spec dict written next to its scripts) as processes, one per
    service, under a fresh prefix: for what only processes show (signals, replicas across
    processes, logs and metrics endpoints of processes).

    Stop a mesh when its tests are done (``mesh.stop()``, or ``with start(...) as mesh``);
    whatever is still running when the test package ends is stopped then.

    ``watchdog=True`` starts the mesh's watchdog too; on the embedded broker it takes a few
    seconds more to join its group. ``env`` is added to every child's environment.
    """
    meshes: list[ProcessMesh] = []

    def start(
        mesh: Path | dict[str, Any],
        *,
        base_dir: Path | None = None,
        env: dict[str, str] | None = None,
        watchdog: bool = False,
    ) -> ProcessMesh:
        prefix = f"t{os.getpid()}x{next(_prefixes)}"
        path = _spec_file(mesh, base_dir, prefix)
        settings = Settings(topic_prefix=prefix, session_timeout_ms=6000)
        child_env = {
            "CHOREO_TOPIC_PREFIX": prefix,
            "CHOREO_SESSION_TIMEOUT_MS": "6000",
            "CHOREO_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        log_dir = tmp_path_factory.mktemp(f"logs-{prefix}")
        spec = load_mesh(path)
        group = start_mesh_group(
            spec, path, broker.bootstrap, settings, log_dir, watchdog=watchdog, env=child_env
        )
        meshes.append(ProcessMesh(spec, path, broker.bootstrap, settings, group))
        return meshes[-1]

    yield start
    for mesh in meshes:
        mesh.stop()


@pytest.fixture
def start_test_mesh_processes(
    start_mesh_processes: Callable[..., ProcessMesh],
) -> Iterator[Callable[..., ProcessMesh]]:
    """Like ``start_mesh_processes``, for one test: its meshes stop when the test ends."""
    started: list[ProcessMesh] = []

    def start(*args: Any, **options: Any) -> ProcessMesh:
        started.append(start_mesh_processes(*args, **options))
        return started[-1]

    yield start
    for mesh in started:
        mesh.stop()
