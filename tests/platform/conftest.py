"""Meshes with Python agents and tool-calling model agents, run as real processes.

Their services export spans to an OTLP receiver this test process runs and announce their
metrics ports as Prometheus file_sd targets, so a test can hold hop records, spans, metrics
and ``choreo trace`` against each other.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLES, RunningMesh
from tests.telemetry.conftest import metrics_targets, receiver
from tests.telemetry.otlp import OtlpReceiver

__all__ = ["metrics_targets", "receiver"]  # the telemetry tests' fixtures, used here too

HERE = Path(__file__).resolve().parent




def observed_env(receiver: OtlpReceiver, targets: Path) -> dict[str, str]:
    """Child environment: spans to the receiver within ~0.2 s, metrics on announced ports."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200",
            "CHOREO_METRICS_PORT": "0", "CHOREO_METRICS_TARGETS_DIR": str(targets)}


def scrape(targets: Path, service: str) -> str:
    """The ``/metrics`` text of every process of ``service`` (e.g. ``agent:desk``)."""
    texts = []
    for target in targets.glob(f"{service.replace(':', '-')}-*.json"):
        for entry in json.loads(target.read_text()):
            for address in entry["targets"]:
                texts.append(httpx.get(f"http://{address}/metrics", timeout=10).text)
    return "\n".join(texts)


@pytest.fixture(scope="package")
def support_desk(start_mesh_processes: Callable[..., RunningMesh], receiver: OtlpReceiver,
                 metrics_targets: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[RunningMesh]:
    """The shipped example, copied so that its database is built fresh, as on first use."""
    folder = tmp_path_factory.mktemp("support-desk") / "support-desk"
    shutil.copytree(EXAMPLES / "support-desk", folder,
                    ignore=shutil.ignore_patterns("*.db", "__pycache__"))
    with start_mesh_processes(folder / "mesh.yaml",
                              env=observed_env(receiver, metrics_targets)) as mesh:
        yield mesh
