"""Meshes with Python agents and tool-calling model agents, run as real processes.

Their services export spans to an OTLP receiver this test process runs and announce their
metrics ports as Prometheus file_sd targets, so a test can hold hop records, spans, metrics
and ``choreo trace`` against each other.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLES, RunningMesh, wait_until
from tests.telemetry.conftest import metrics_targets, receiver
from tests.telemetry.otlp import OtlpReceiver

__all__ = ["metrics_targets", "receiver"]  # the telemetry tests' fixtures, used here too

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def serve_mcp_over_http(
    script: Path, port: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """An MCP server script (``--http PORT``) as its own process, once it listens; its
    output is appended to ``log``."""
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, str(script), "--http", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    # generous: on a loaded machine importing the server's web stack takes a while
    wait_until(
        lambda: listening(port) or server.poll() is not None,
        240,
        message=f"the MCP server {script.name} over HTTP",
    )
    assert server.poll() is None, log.read_text()
    return server


def observed_env(receiver: OtlpReceiver, targets: Path) -> dict[str, str]:
    """Child environment: spans to the receiver within ~0.2 s, metrics on announced ports."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
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
    start_mesh_processes: Callable[..., RunningMesh],
    receiver: OtlpReceiver,
    metrics_targets: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningMesh]:
    """The shipped example, copied so that its database is built fresh, as on first use."""
    folder = tmp_path_factory.mktemp("support-desk") / "support-desk"
    shutil.copytree(
        EXAMPLES / "support-desk", folder, ignore=shutil.ignore_patterns("*.db", "__pycache__")
    )
    with start_mesh_processes(
        folder / "mesh.yaml", env=observed_env(receiver, metrics_targets)
    ) as mesh:
        yield mesh
