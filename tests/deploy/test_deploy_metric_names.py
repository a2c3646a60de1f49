"""The dashboard and the alert rules read only metrics the services export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from promql_names import (
    SUFFIXES,
    exported_families,
    exported_names,
    referenced_names,
    template_names,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "choreo-mesh.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_exprs() -> list[str]:
    dash = _dashboard()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dash.get("annotations", {}).get("list", []) if "expr" in a]
    return exprs


def alert_exprs() -> dict[str, str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for g in groups for rule in g["rules"]}


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (agent, status) (rate(choreo_steps_total{agent=~"$agent"}[$__rate_interval]))',
            {"choreo_steps_total"},
        ),
        (
            "histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m] offset 1h))) > 1e3",
            {"x_bucket"},
        ),
        (
            "sum(rate(a_total[5m])) / on (agent) group_left (model) b and c unless d",
            {"a_total", "b", "c", "d"},
        ),
        ('count(up{job="choreo", le="0.5"}) or vector(0)', {"up"}),
    ],
)
def test_referenced_names_parses_promql(expr: str, names: set[str]) -> None:
    assert referenced_names(expr) == names


def test_exported_names_follow_prometheus_conventions() -> None:
    names = exported_names()
    assert {
        "choreo_step_duration_seconds_bucket",
        "choreo_step_duration_seconds_count",
        "choreo_steps_total",
        "choreo_traces_in_flight",
    } <= names
    assert "choreo_steps" not in names
    assert "choreo_step_duration_seconds" not in names


def test_an_unknown_metric_is_caught() -> None:
    assert referenced_names("rate(choreo_step_total[5m])") - exported_names() == {
        "choreo_step_total"
    }


def test_dashboard_reads_only_exported_metrics() -> None:
    used = set().union(*map(referenced_names, dashboard_exprs()))
    for var in _dashboard()["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        used |= template_names(query)
    assert used, "no metric found in the dashboard"
    assert used - exported_names() == set()


def test_dashboard_shows_every_exported_metric() -> None:
    used = set().union(*map(referenced_names, dashboard_exprs()))
    families = exported_families()
    missing = {f for f, kind in families.items() if not used & {f + s for s in SUFFIXES[kind]}}
    assert missing == set(), f"metrics with no panel: {sorted(missing)}"


def test_alert_rules_read_only_exported_metrics() -> None:
    for alert, expr in alert_exprs().items():
        used = referenced_names(expr)
        assert used, f"{alert}: no metric in {expr!r}"
        assert used - exported_names() == set(), alert


def test_step_latency_quantiles_per_agent() -> None:
    exprs = dashboard_exprs()
    for q in ("0.5", "0.95", "0.99"):
        assert any(
            e.startswith(f"histogram_quantile({q}, sum by (agent, le)")
            and "choreo_step_duration_seconds_bucket" in e
            for e in exprs
        ), q
