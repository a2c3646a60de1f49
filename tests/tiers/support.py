"""What the tier tests observe over HTTP: the scripted server's stats and services' metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families


def server_stats(base_url: str) -> dict[str, Any]:
    """``GET /v1/stats`` of a scripted model server (``base_url`` ends in ``/v1``)."""
    response = httpx.get(f"{base_url}/stats", timeout=10)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


def cost_of(stats: dict[str, Any], prices: dict[str, tuple[float, float]]) -> float:
    """What the server's token counts cost at each requested model's prices per million."""
    return sum(
        (m["prompt_tokens"] * prices[name][0] + m["completion_tokens"] * prices[name][1]) / 1e6
        for name, m in stats["models"].items()
    )


def scrape(targets_dir: Path, service_prefix: str, sample: str, **labels: str) -> float:
    """Sum of ``sample`` (with ``labels``) over every announced service whose name starts
    with ``service_prefix``, scraped from its ``/metrics``."""
    total = 0.0
    for target in sorted(targets_dir.glob("*.json")):
        for entry in json.loads(target.read_text()):
            if not entry["labels"]["service"].startswith(service_prefix):
                continue
            for address in entry["targets"]:
                text = httpx.get(f"http://{address}/metrics", timeout=10).text
                total += sum(
                    s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                    if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
                )
    return total
