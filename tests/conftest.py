"""Shared fixtures: one real broker per test session, meshes started as real processes.

The broker comes from the project's one resolution order: ``KAFKA_BOOTSTRAP_SERVERS``, else a
testcontainers Kafka where a Docker engine answers, else the embedded broker.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from choreo.client import ResultTimeout, SyncClient
from choreo.kafka.broker import BrokerHandle, resolve_broker
from choreo.local.launch import start_mesh
from choreo.local.processes import ProcessGroup
from choreo.observe.settings import Settings
from choreo.schemas import Envelope, HopRecord, Snapshot, Task, TerminalResult
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh

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
    keep = [item for item in items if "broker" in getattr(item, "fixturenames", ())]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerHandle]:
    handle = resolve_broker()
    yield handle
    handle.stop()


@dataclass
class RunningMesh:
    """A mesh whose services run as processes, with its own topic prefix on the broker; read
    and written through a choreo.client.SyncClient (``client``)."""

    spec: MeshSpec
    path: Path
    bootstrap: str
    settings: Settings
    group: ProcessGroup
    _client: SyncClient | None = field(default=None, init=False, repr=False)

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.topic_prefix)

    @property
    def client(self) -> SyncClient:
        """A client of this mesh, opened on first use and closed by ``stop``."""
        if self._client is None:
            self._client = SyncClient(self.bootstrap, settings=self.settings)
        return self._client

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)

    def submit(self, text: str, **fields: Any) -> str:
        return self.client.submit(Task(input=text, **fields))

    def result(self, trace_id: str, timeout: float = 90.0) -> TerminalResult:
        try:
            return self.client.wait(trace_id, timeout)
        except ResultTimeout:
            failed = [f"{c.name}: {c.log_path.read_text()[-2000:]}" for c in self.group.failed()]
            raise AssertionError(
                f"no result for {trace_id} within {timeout}s; exited services: {failed}"
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

    def stop(self) -> None:
        """Stop the mesh's processes (idle services still poll the broker and cost CPU) and
        close its client."""
        self.group.stop()
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> RunningMesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CHOREO_TOPIC_PREFIX": self.settings.topic_prefix,
        }


@pytest.fixture(scope="package")
def start_mesh_processes(
    broker: BrokerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., RunningMesh]]:
    """Start a mesh (path, or a spec dict written next to its scripts) under a fresh prefix.

    Stop a mesh when its tests are done (``mesh.stop()``, or ``with start(...) as mesh``);
    whatever is still running when the test package ends is stopped then.

    ``watchdog=True`` starts the mesh's watchdog too; on the embedded broker it takes about
    30 s to join its group, so start as few watchdog meshes as a module can do with.
    """
    meshes: list[RunningMesh] = []

    def start(
        mesh: Path | dict[str, Any],
        *,
        base_dir: Path | None = None,
        env: dict[str, str] | None = None,
        watchdog: bool = False,
    ) -> RunningMesh:
        prefix = f"t{os.getpid()}x{next(_prefixes)}"
        if isinstance(mesh, dict):
            assert base_dir is not None
            path = base_dir / f"mesh-{prefix}.yaml"
            path.write_text(yaml.safe_dump(mesh))
        else:
            path = mesh
        settings = Settings(topic_prefix=prefix, session_timeout_ms=6000)
        child_env = {
            "CHOREO_TOPIC_PREFIX": prefix,
            "CHOREO_SESSION_TIMEOUT_MS": "6000",
            "CHOREO_LOG_LEVEL": "INFO",
            **(env or {}),
        }
        log_dir = tmp_path_factory.mktemp(f"logs-{prefix}")
        spec = load_mesh(path)
        group = start_mesh(
            spec, path, broker.bootstrap, settings, log_dir, watchdog=watchdog, env=child_env
        )
        meshes.append(RunningMesh(spec, path, broker.bootstrap, settings, group))
        return meshes[-1]

    yield start
    for mesh in meshes:
        mesh.stop()


@pytest.fixture
def start_test_mesh(
    start_mesh_processes: Callable[..., RunningMesh],
) -> Iterator[Callable[..., RunningMesh]]:
    """Like ``start_mesh_processes``, for one test: its meshes stop when the test ends."""
    started: list[RunningMesh] = []

    def start(*args: Any, **options: Any) -> RunningMesh:
        started.append(start_mesh_processes(*args, **options))
        return started[-1]

    yield start
    for mesh in started:
        mesh.stop()


@pytest.fixture(scope="module")
def writer_editor(start_mesh_processes: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh_processes(EXAMPLES / "writer-editor" / "mesh.yaml") as mesh:
        yield mesh
