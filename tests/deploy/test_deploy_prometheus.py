"""Prometheus config and alert rules, checked and unit-tested by promtool itself."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`)"
)


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@needs_promtool
def test_compose_config_is_valid() -> None:
    promtool("check", "config", "prometheus.yml")


@needs_promtool
def test_local_config_is_valid_with_file_sd_targets(tmp_path: Path) -> None:
    for name in ("prometheus-local.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / name, tmp_path / name)
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "keeper.json").write_text(
        json.dumps([{"targets": ["127.0.0.1:9100"], "labels": {"service": "keeper"}}])
    )
    out = promtool("check", "config", "prometheus-local.yml", cwd=tmp_path)
    assert "WARNING" not in out  # the targets file was found and parsed


@needs_promtool
def test_rules_are_valid() -> None:
    promtool("check", "rules", "alerts.yml")


@needs_promtool
def test_rules_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


@needs_promtool
def test_rules_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    rules = (PROMETHEUS / "alerts.yml").read_text().replace("> 1000", "> 5000")
    (tmp_path / "alerts.yml").write_text(rules)
    shutil.copy(PROMETHEUS / "alerts_test.yml", tmp_path)
    done = subprocess.run(
        [str(PROMTOOL), "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "ChoreoConsumerLagHigh" in done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    alerts = {rule["alert"] for g in groups for rule in g["rules"]}
    cases = [
        case
        for test in yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested staying quiet"


def test_prometheus_scrapes_every_networked_choreo_service() -> None:
    compose = yaml.safe_load((PROMETHEUS.parents[1] / "docker-compose.yml").read_text())
    choreo = {
        name
        for name, svc in compose["services"].items()
        if str(svc.get("image", "")).startswith("choreo-mesh")
        and svc.get("network_mode") != "none"
        and svc.get("restart") != "no"
    }
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "choreo")
    scraped = {name for sd in job["dns_sd_configs"] for name in sd["names"]}
    assert scraped == choreo
    assert all(sd["port"] == 9100 for sd in job["dns_sd_configs"])
