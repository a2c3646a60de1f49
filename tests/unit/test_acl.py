"""``choreo acl``: each service's rights follow what it reads and writes, for every example.

That no service holds a right it does not use, and lacks none it does, is checked against the
broker's authorizer in tests/security/test_secured_kafka.py; these hold the rules' shape.
"""

from __future__ import annotations

import pytest

from choreo.cli.main import main
from choreo.kafka.acl import Acl, mesh_acls
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh
from tests.conftest import EXAMPLES

NAMES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "mesh.yaml").is_file())
TOPICS = Topics("acme")


def writes(rules: list[Acl]) -> set[str]:
    return {r.name for r in rules if r.resource == "TOPIC" and r.operation == "WRITE"}


@pytest.mark.parametrize("example", NAMES)
def test_the_keeper_alone_writes_state_blobs_results_hops_and_events(example: str) -> None:
    spec = load_mesh(EXAMPLES / example / "mesh.yaml")
    rules = mesh_acls(spec, TOPICS)
    kept = {TOPICS.state, TOPICS.blobs, TOPICS.results, TOPICS.hops, TOPICS.conflicts}
    kept |= {TOPICS.event(t) for a in spec.agents for t in a.subscribe}
    assert kept <= writes(rules["keeper"])
    for service, service_rules in rules.items():
        if service != "keeper":
            assert not kept & writes(service_rules), service


@pytest.mark.parametrize("example", NAMES)
def test_an_agent_reads_only_its_events_and_state_values_and_writes_only_the_outbox(
    example: str,
) -> None:
    spec = load_mesh(EXAMPLES / example / "mesh.yaml")
    rules = mesh_acls(spec, TOPICS)
    for agent in spec.agents:
        own = rules[f"agent:{agent.name}"]
        group = TOPICS.agent_group(agent.name)
        assert writes(own) == {TOPICS.outbox, TOPICS.dlq}
        assert {r.name for r in own if r.operation == "READ"} == {
            group,
            *(TOPICS.event(t) for t in agent.subscribe),
            TOPICS.blobs,
        }
        assert {r for r in own if r.resource == "TRANSACTIONAL_ID"} == {
            Acl("TRANSACTIONAL_ID", "PREFIXED", f"{group}.", "WRITE")
        }


@pytest.mark.parametrize("example", NAMES)
def test_no_prefixed_rule_reaches_past_a_services_own_names(example: str) -> None:
    rules = mesh_acls(load_mesh(EXAMPLES / example / "mesh.yaml"), TOPICS)
    for service, service_rules in rules.items():
        for rule in service_rules:
            if rule.pattern == "PREFIXED":
                # a group's transactional ids, or the watchdog's own faust topics
                assert rule.name.endswith(".") or rule.name == "acme-watchdog-", (service, rule)


def test_choreo_acl_prints_one_line_per_rule_with_the_named_principal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOREO_TOPIC_PREFIX", "acme")
    mesh = EXAMPLES / "writer-editor" / "mesh.yaml"
    assert main(["acl", str(mesh), "--principal", "keeper=User:k"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()[2:]]
    expected = mesh_acls(load_mesh(mesh), TOPICS)
    assert len(rows) == sum(len(r) for r in expected.values())
    assert {row[1] for row in rows if row[0] == "keeper"} == {"User:k"}
    assert ["keeper", "User:k", "WRITE", "TOPIC", "LITERAL", "acme.state"] in rows


def test_choreo_acl_refuses_a_service_the_mesh_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    mesh = EXAMPLES / "writer-editor" / "mesh.yaml"
    assert main(["acl", str(mesh), "--principal", "agent:nobody=User:x"]) == 2
    assert "agent:nobody" in capsys.readouterr().err
