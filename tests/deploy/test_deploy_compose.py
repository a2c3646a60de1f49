"""docker-compose.yml: valid for Compose itself and for the Compose Specification schema, and
wired the way the services expect (env, topics first, sandbox without network, model URLs)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from choreo.kafka.broker import KAFKA_VERSION
from choreo.spec.mesh import load_mesh

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_BIN = shutil.which("docker-compose")
MESH_DIR = ROOT / "examples" / "writer-editor"
SERVICE_ENV = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "CHOREO_METRICS_PORT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
)

needs_compose = pytest.mark.skipif(
    COMPOSE_BIN is None, reason="docker-compose not installed (Debian package `docker-compose`)"
)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def choreo_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if str(svc.get("image", "")).startswith("choreo-mesh:")
    }


def agent_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in choreo_services().items()
        if svc["command"][:2] == ["run", "agent"]
    }


@cache
def compose_spec_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema that the installed docker-compose validates with."""
    assert COMPOSE_BIN is not None
    shebang = Path(COMPOSE_BIN).read_text(errors="replace").splitlines()[0]
    if not shebang.startswith("#!") or "python" not in shebang:
        pytest.skip(f"{COMPOSE_BIN} is not the Python docker-compose; its schema is not at hand")
    locate = (
        "import compose.config, pathlib; "
        "print(pathlib.Path(compose.config.__file__).with_name('compose_spec.json'))"
    )
    path = subprocess.run(
        [shebang[2:].strip(), "-c", locate], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    schema: dict[str, Any] = json.loads(Path(path).read_text())
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_spec_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


@needs_compose
def test_docker_compose_accepts_the_file() -> None:
    done = subprocess.run(
        [str(COMPOSE_BIN), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@needs_compose
def test_file_matches_the_compose_spec_schema() -> None:
    assert schema_errors(compose()) == []


@needs_compose
def test_schema_check_rejects_a_broken_file() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["keeper"]["replica"] = 2
    broken["services"]["sandbox"]["network_mode"] = ["none"]
    errors = schema_errors(broken)
    assert any("replica" in e for e in errors), errors
    assert any(e.startswith("services/sandbox/network_mode") for e in errors), errors


def test_every_choreo_service_has_the_runtime_env() -> None:
    names = []
    for name, svc in choreo_services().items():
        env = svc["environment"]
        assert set(SERVICE_ENV) <= set(env), name
        assert str(env["CHOREO_METRICS_PORT"]) == "9100", name
        names.append(env["OTEL_SERVICE_NAME"])
    assert len(names) == len(set(names)), "OTEL_SERVICE_NAME must tell services apart"


def test_services_start_after_the_topics_exist() -> None:
    services = choreo_services()
    assert services["topics"]["command"] == ["topics", "--mesh", "/mesh/mesh.yaml"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("keeper", "watchdog", *agent_services()):
        assert services[name]["depends_on"]["topics"] == {
            "condition": "service_completed_successfully"
        }, name


def test_one_service_per_agent_with_replicas_and_model_urls() -> None:
    spec = load_mesh(MESH_DIR / "mesh.yaml")
    agents = agent_services()
    assert sorted(agents) == sorted(a.name for a in spec.agents)
    for name, svc in agents.items():
        assert svc["command"] == ["run", "agent", "--mesh", "/mesh/mesh.yaml", "--agent", name]
        assert 1 <= svc["deploy"]["replicas"] <= spec.topics.partitions
        for tier in spec.models:
            url = svc["environment"][f"CHOREO_MODEL_{tier.upper()}_BASE_URL"]
            assert url == "http://model:8080/v1", name
        assert "./examples/writer-editor:/mesh:ro" in svc["volumes"]
    model = choreo_services()["model"]
    assert model["command"][:2] == ["model-server", "/mesh/model.yaml"]
    assert model["command"][model["command"].index("--port") + 1] == "8080"


def test_sandbox_has_no_network_and_shares_its_socket_with_the_agents() -> None:
    sandbox = choreo_services()["sandbox"]
    assert sandbox["command"] == ["run", "sandbox"]
    assert sandbox["network_mode"] == "none"
    socket_mount = "sandbox-socket:/run/choreo-sandbox"
    assert socket_mount in sandbox["volumes"]
    for name, svc in agent_services().items():
        assert socket_mount in svc["volumes"], name
    assert "sandbox-socket" in compose()["volumes"]


def test_the_sandbox_may_mount_the_proc_bubblewrap_gives_the_code_it_runs() -> None:
    """Under a real engine bubblewrap failed with "Can't mount proc on /newroot/proc" until
    the engine's masked /proc paths were lifted for this one service."""
    options = choreo_services()["sandbox"]["security_opt"]
    assert {"seccomp:unconfined", "apparmor:unconfined", "systempaths=unconfined"} <= set(options)
    assert choreo_services()["sandbox"]["cap_drop"] == ["ALL"]


def test_compose_runs_the_kafka_release_the_suite_is_tested_on() -> None:
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_grafana_provisioning_matches_the_mounts_and_the_dashboard() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./")
    )
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/choreo.yaml").read_text()
    )["providers"]
    assert mounts["./deploy/grafana/dashboards"] == providers[0]["options"]["path"]
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text()
    )
    uids = {s["uid"] for s in sources["datasources"]}
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/choreo-mesh.json").read_text())
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert used and used <= uids
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_mounted_files_exist() -> None:
    for svc in compose()["services"].values():
        for volume in svc.get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / volume.split(":", 1)[0]).exists(), volume
