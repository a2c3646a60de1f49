"""Fixtures of the process tests: meshes whose services are processes, observed from outside.

Their services export spans to an OTLP receiver this test process runs, and serve metrics on
free ports that they announce as Prometheus file_sd targets (``CHOREO_METRICS_TARGETS_DIR``):
each process's own endpoint and service name is what these tests read. This process traces
too (``choreo-cli``), so a task's trace starts at its submission.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from choreo.observe import telemetry
from tests.conftest import EXAMPLES, ProcessMesh
from tests.telemetry.otlp import OtlpReceiver

_EXPORT_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "200"}  # spans leave each process within ~0.2 s


@pytest.fixture(scope="package")
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.close()


@pytest.fixture(scope="package")
def tracing(receiver: OtlpReceiver) -> Iterator[None]:
    """This process's own spans (the submissions) go to the receiver too."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        for name, value in _EXPORT_ENV.items():
            env.setenv(name, value)
        env.delenv("OTEL_SERVICE_NAME", raising=False)
        env.delenv("OTEL_TRACES_EXPORTER", raising=False)
        provider = telemetry.configure("cli")
    assert provider is not None
    yield
    telemetry.shutdown()


@pytest.fixture(scope="package")
def metrics_targets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the services announce their metrics ports; a local Prometheus reads it."""
    return tmp_path_factory.mktemp("prometheus") / "targets"


def observed_env(receiver: OtlpReceiver, targets: Path) -> dict[str, str]:
    """Child environment: spans to the receiver within ~0.2 s, metrics on announced ports."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        **_EXPORT_ENV,
        "CHOREO_METRICS_PORT": "0",
        "CHOREO_METRICS_TARGETS_DIR": str(targets),
    }


def scrape(targets: Path, service: str) -> str:
    """The ``/metrics`` text of every process of ``service`` (e.g. ``agent:desk``)."""
    texts = []
    for target in targets.glob(f"{service.replace(':', '-')}-*.json"):
        for entry in json.loads(target.read_text()):
            for address in entry["targets"]:
                texts.append(httpx.get(f"http://{address}/metrics", timeout=10).text)
    return "\n".join(texts)


@pytest.fixture(scope="package")
def support_desk(
    start_mesh_processes: Callable[..., ProcessMesh],
    receiver: OtlpReceiver,
    metrics_targets: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProcessMesh]:
    """The shipped example as processes, copied so that its database is built fresh, as on
    first use."""
    folder = tmp_path_factory.mktemp("support-desk") / "support-desk"
    shutil.copytree(
        EXAMPLES / "support-desk", folder, ignore=shutil.ignore_patterns("*.db", "__pycache__")
    )
    with start_mesh_processes(
        folder / "mesh.yaml", env=observed_env(receiver, metrics_targets)
    ) as mesh:
        yield mesh


@pytest.fixture(scope="package")
def observed_mesh(
    start_mesh_processes: Callable[..., ProcessMesh],
    receiver: OtlpReceiver,
    metrics_targets: Path,
    tracing: None,
) -> Iterator[ProcessMesh]:
    mesh = start_mesh_processes(
        EXAMPLES / "writer-editor" / "mesh.yaml", env=observed_env(receiver, metrics_targets)
    )
    yield mesh
    mesh.group.stop()
