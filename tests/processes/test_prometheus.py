"""A real Prometheus scrapes the running mesh; PromQL gives back what the hop records say."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from choreo.kafka.broker import free_port
from choreo.kafka.clients import read_topic
from choreo.schemas import HopRecord, decode
from tests.conftest import REPO, ProcessMesh, wait_until

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not Path(PROMETHEUS).exists(),
        reason="needs Prometheus: Debian package `prometheus` (apt-get install -y "
        "prometheus), which CI installs",
    ),
]
SERVICES = {"keeper", "agent:writer", "agent:editor", "model-server"}


@pytest.fixture(scope="module")
def prometheus(metrics_targets: Path) -> Iterator[str]:
    """Prometheus with the repository's local config: file_sd targets the services write."""
    folder = metrics_targets.parent
    for name in ("prometheus-local.yml", "alerts.yml"):
        shutil.copy(REPO / "deploy" / "prometheus" / name, folder / name)
    metrics_targets.mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{free_port()}"
    with (folder / "prometheus.log").open("ab") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={folder / 'prometheus-local.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def ready() -> bool:
        assert process.poll() is None, (folder / "prometheus.log").read_text()[-2000:]
        try:
            return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, 30, message="Prometheus ready")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def scalar(url: str, promql: str) -> float | None:
    result = query(url, promql)
    return float(result[0]["value"][1]) if result else None


def healthy_services(url: str) -> set[str]:
    targets = httpx.get(f"{url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    return {t["labels"]["service"] for t in targets if t["health"] == "up"}


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """PromQL's histogram_quantile over cumulative (upper bound, count) buckets, ascending."""
    total = buckets[-1][1]
    rank = q * total
    index = next(i for i, (_, count) in enumerate(buckets) if count >= rank)
    if index == len(buckets) - 1:
        return buckets[-2][0]
    start, below = buckets[index - 1] if index > 0 else (0.0, 0.0)
    end, count = buckets[index]
    return start + (end - start) * (rank - below) / (count - below)


def test_prometheus_reads_step_latency_quantiles_and_token_totals(
    observed_mesh: ProcessMesh, prometheus: str
) -> None:
    mesh = observed_mesh
    trace_ids = [mesh.submit(f"measured task {n}") for n in range(3)]
    for trace_id in trace_ids:
        assert mesh.result(trace_id).status == "completed"
    records = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.hops))
    hops = [decode(r.value, HopRecord) for r in records if r.value]
    tokens = sum(h.usage.tokens_in + h.usage.tokens_out for h in hops)
    assert tokens > 0

    wait_until(
        lambda: healthy_services(prometheus) >= SERVICES,
        30,
        message=f"Prometheus scraping {sorted(SERVICES)}",
    )
    wait_until(
        lambda: scalar(prometheus, "sum(choreo_tokens_total)") == tokens,
        30,
        message=f"sum(choreo_tokens_total) == {tokens}",
    )
    wait_until(
        lambda: scalar(prometheus, "sum(choreo_steps_total)") == len(hops),
        30,
        message=f"sum(choreo_steps_total) == {len(hops)}",
    )
    by_direction = {
        r["metric"]["direction"]: float(r["value"][1])
        for r in query(prometheus, "sum by (direction) (choreo_tokens_total)")
    }
    assert by_direction == {
        "in": sum(h.usage.tokens_in for h in hops),
        "out": sum(h.usage.tokens_out for h in hops),
    }

    # Series known at start exist from the first scrape, at zero until something happens.
    assert scalar(prometheus, 'sum(choreo_traces_finished_total{status="halted"})') == 0
    assert scalar(prometheus, 'sum(choreo_steps_total{status="refused"})') == 0
    # Every group reports its lag per topic; with every task finished, nothing is behind.
    groups = {f"{mesh.topics.prefix}.{name}" for name in ("keeper", "agent.writer", "agent.editor")}
    wait_until(
        lambda: (
            {r["metric"]["group"] for r in query(prometheus, "choreo_consumer_lag_records")}
            >= groups
        ),
        30,
        message=f"lag of {groups}",
    )
    wait_until(
        lambda: scalar(prometheus, "sum(choreo_consumer_lag_records)") == 0,
        30,
        message="no consumer lag",
    )

    # The step-latency histogram holds exactly the hop records' durations...
    durations: dict[str, list[float]] = defaultdict(list)
    for hop in hops:
        durations[hop.agent].append(hop.duration_ms / 1000)
    buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for series in query(prometheus, "sum by (agent, le) (choreo_step_duration_seconds_bucket)"):
        le = float(series["metric"]["le"])
        buckets[series["metric"]["agent"]].append((le, float(series["value"][1])))
    assert set(buckets) == set(durations) == {"writer", "editor"}
    for agent, counts in buckets.items():
        counts.sort()
        assert counts == [
            (bound, sum(1 for d in durations[agent] if d <= bound)) for bound, _ in counts
        ], agent

    # ...so the quantiles PromQL computes per agent are the ones those durations give.
    for q in (0.5, 0.95, 0.99):
        quantiles = {
            r["metric"]["agent"]: float(r["value"][1])
            for r in query(
                prometheus,
                f"histogram_quantile({q}, sum by (agent, le) "
                f"(choreo_step_duration_seconds_bucket))",
            )
        }
        assert set(quantiles) == {"writer", "editor"}
        for agent, value in quantiles.items():
            assert math.isfinite(value) and value > 0
            assert value == pytest.approx(bucket_quantile(q, sorted(buckets[agent]))), (agent, q)
