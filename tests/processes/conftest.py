"""One writer-editor mesh for the telemetry tests, run as real processes.

Its services export spans to an OTLP receiver this test process runs, and serve metrics on
free ports that they announce as Prometheus file_sd targets (``CHOREO_METRICS_TARGETS_DIR``).
This process traces too (``choreo-cli``), so a task's trace starts at its submission.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from choreo.observe import telemetry
from tests.conftest import EXAMPLES, RunningMesh
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


@pytest.fixture(scope="package")
def observed_mesh(
    start_mesh_processes: Callable[..., RunningMesh],
    receiver: OtlpReceiver,
    metrics_targets: Path,
    tracing: None,
) -> Iterator[RunningMesh]:
    mesh = start_mesh_processes(
        EXAMPLES / "writer-editor" / "mesh.yaml",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            **_EXPORT_ENV,
            "CHOREO_METRICS_PORT": "0",
            "CHOREO_METRICS_TARGETS_DIR": str(metrics_targets),
        },
    )
    yield mesh
    mesh.group.stop()
