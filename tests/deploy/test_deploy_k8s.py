"""Kubernetes manifests: valid against the Kubernetes schemas (offline), KEDA objects carry what
the kafka scaler needs, and everything agrees with the example mesh spec."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
EXAMPLE = ROOT / "examples" / "writer-editor"
KUBECTL = shutil.which("kubectl")

# The fields KEDA's kafka scaler cannot do without (keda.sh/v1alpha1 ScaledObject).
KEDA_SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"]},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"const": "kafka"},
                            "metadata": {
                                "type": "object",
                                "required": [
                                    "bootstrapServers",
                                    "consumerGroup",
                                    "topic",
                                    "lagThreshold",
                                ],
                                "additionalProperties": {"type": "string"},
                                "properties": {"lagThreshold": {"pattern": "^[1-9][0-9]*$"}},
                            },
                        },
                    },
                },
            },
        },
    },
}


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return data


def documents() -> list[dict[str, Any]]:
    return [
        doc
        for name in kustomization()["resources"]
        for doc in yaml.safe_load_all((K8S / name).read_text())
        if doc
    ]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def agent_deployments() -> dict[str, dict[str, Any]]:
    return {
        name.removeprefix("choreo-agent-"): d
        for name, d in of_kind("Deployment").items()
        if name.startswith("choreo-agent-")
    }


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_matches_its_schema(doc: dict[str, Any]) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, KEDA_SCALED_OBJECT)
    else:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_schema_check_rejects_a_broken_manifest() -> None:
    keeper = of_kind("Deployment")["choreo-keeper"]
    keeper["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(keeper, kubernetes_validate.latest_version(), strict=True)


def test_keda_schema_check_rejects_a_trigger_without_lag_threshold() -> None:
    scaled = next(iter(of_kind("ScaledObject").values()))
    del scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, KEDA_SCALED_OBJECT)


@pytest.mark.parametrize("name", ["mesh.yaml", "model.yaml"])
def test_mesh_configmap_files_are_the_example(name: str) -> None:
    assert (K8S / "mesh" / name).read_text() == (EXAMPLE / name).read_text(), (
        f"refresh with: cp examples/writer-editor/{name} deploy/k8s/mesh/{name}"
    )


def test_a_deployment_per_service_and_agent() -> None:
    spec = load_mesh(K8S / "mesh" / "mesh.yaml")
    deployments = of_kind("Deployment")
    assert {"choreo-keeper", "choreo-watchdog", "choreo-model"} <= set(deployments)
    assert sorted(agent_deployments()) == sorted(a.name for a in spec.agents)
    assert "model" in of_kind("Service")


def test_agents_run_their_agent_with_a_sandbox_beside_them() -> None:
    spec = load_mesh(K8S / "mesh" / "mesh.yaml")
    for name, deployment in agent_deployments().items():
        by_name = {c["name"]: c for c in containers(deployment)}
        assert by_name["agent"]["args"] == [
            "run",
            "agent",
            "--mesh",
            "/mesh/mesh.yaml",
            "--agent",
            name,
        ]
        env = {e["name"]: e["value"] for e in by_name["agent"]["env"]}
        for tier in spec.models:
            assert env[f"CHOREO_MODEL_{tier.upper()}_BASE_URL"] == "http://model:8080/v1"
        assert by_name["sandbox"]["args"] == ["run", "sandbox"]
        for role in ("agent", "sandbox"):
            mounts = {m["name"]: m["mountPath"] for m in by_name[role]["volumeMounts"]}
            assert mounts["sandbox-socket"] == "/run/choreo-sandbox", (name, role)
        # bubblewrap mounts a fresh /proc: unmasked, in the pod's own user namespace
        assert by_name["sandbox"]["securityContext"]["procMount"] == "Unmasked", name
        assert deployment["spec"]["template"]["spec"]["hostUsers"] is False, name


def test_every_container_is_configured_and_bounded() -> None:
    for name, deployment in of_kind("Deployment").items():
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true", name
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9100", name
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, name
        for container in containers(deployment):
            where = f"{name}/{container['name']}"
            assert container["envFrom"] == [{"configMapRef": {"name": "choreo-env"}}], where
            assert any(e["name"] == "OTEL_SERVICE_NAME" for e in container["env"]), where
            assert "memory" in container["resources"]["limits"], where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
        for container in pod["spec"]["containers"]:
            assert "livenessProbe" in container or "readinessProbe" in container, name


def test_keda_scales_each_agent_on_its_consumer_group_lag() -> None:
    spec = load_mesh(K8S / "mesh" / "mesh.yaml")
    bootstrap = of_kind("ConfigMap")["choreo-env"]["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind("ScaledObject").values()}
    assert sorted(scaled) == sorted(f"choreo-agent-{a.name}" for a in spec.agents)
    for agent in spec.agents:
        obj = scaled[f"choreo-agent-{agent.name}"]
        triggers = [t["metadata"] for t in obj["spec"]["triggers"]]
        topics = Topics("choreo")  # the names the services consume, under the default prefix
        assert sorted(t["topic"] for t in triggers) == sorted(
            topics.event(t) for t in agent.subscribe
        )
        assert {t["consumerGroup"] for t in triggers} == {f"choreo.agent.{agent.name}"}
        assert {t["bootstrapServers"] for t in triggers} == {bootstrap}
        assert obj["spec"]["maxReplicaCount"] <= spec.topics.partitions


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed; the raw files are checked")
def test_kustomize_renders_valid_manifests() -> None:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    mesh_maps = [
        d["metadata"]["name"]
        for d in rendered
        if d["kind"] == "ConfigMap" and "mesh.yaml" in d.get("data", {})
    ]
    assert len(mesh_maps) == 1 and mesh_maps[0].startswith("choreo-mesh-")
    for doc in rendered:
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "choreo"
        if doc["kind"] == "Deployment":
            volumes = doc["spec"]["template"]["spec"]["volumes"]
            assert {"name": "mesh", "configMap": {"name": mesh_maps[0]}} in volumes
        if not doc["apiVersion"].startswith("keda.sh/"):
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
