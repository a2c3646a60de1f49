"""Every metric the docs name exists, with exactly the labels the docs give it."""

from __future__ import annotations

import re

import pytest
from prometheus_client.metrics import MetricWrapperBase

from choreo.observe import metrics
from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: Names the docs write like metrics that are not: choreo.testing.plugin's pytest fixtures.
NOT_METRICS = {"choreo_broker", "choreo_mesh"}


def _registered() -> dict[str, tuple[str, ...]]:
    """Exposed name -> label names, for every metric of ``choreo.observe.metrics``."""
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name  # a counter's name without its ``_total``
            labels = tuple(value._labelnames)
            found[name] = labels
            if value._type == "counter":
                found[f"{name}_total"] = labels
    return found


def _documented() -> list[tuple[str, str, tuple[str, ...] | None]]:
    """(where, metric, labels or None when the text gives none) for each mention."""
    mentions = []
    for path in DOCS:
        text = path.read_text()
        for found in re.finditer(
            r"`(choreo_[a-z_]+)(?:\{([a-z_,]*)\})?`"
            r"(?:\s*\(labels\s+([^)]*)\))?",
            text,
        ):
            name, braces, paren = found.groups()
            if name in NOT_METRICS:
                continue
            labels: tuple[str, ...] | None = None
            if braces is not None:
                labels = tuple(braces.split(",")) if braces else ()
            elif paren is not None:  # "`agent`, `model`, `direction`: `in` or `out`"
                labels = tuple(re.findall(r"`([a-z_]+)`", part)[0] for part in paren.split(","))
            mentions.append((path.name, name, labels))
        for row in re.finditer(r"^\| `(choreo_[a-z_]+)` \| ([^|]*) \|", text, re.M):
            mentions.append(
                (path.name, row.group(1), tuple(re.findall(r"`([a-z_]+)`", row.group(2))))
            )
    return mentions


@pytest.mark.parametrize(
    "where,name,labels", _documented(), ids=lambda v: v if isinstance(v, str) else None
)
def test_a_documented_metric_exists_with_its_labels(
    where: str, name: str, labels: tuple[str, ...] | None
) -> None:
    registered = _registered()
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    assert base in registered, f"{where}: no metric {name}"
    if labels is not None:
        assert set(labels) == set(registered[base]), (where, name, registered[base])
