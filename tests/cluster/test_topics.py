"""Topic creation against the session's broker: what the spec sets is what the broker gets,
and a refusal stops everything before any topic exists."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from choreo.kafka.broker import BrokerHandle
from choreo.kafka.errors import TopicsRefused
from choreo.kafka.topics import ensure_topics
from choreo.local.examples import example_mesh
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, load_mesh
from tests.commands import CHOREO

pytestmark = pytest.mark.integration
_prefixes = itertools.count(1)


def _spec(**topics: int | None) -> MeshSpec:
    spec = load_mesh(example_mesh("writer-editor"))
    return spec.model_copy(update={"topics": spec.topics.model_copy(update=topics)})


async def _existing(bootstrap: str, prefix: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t for t in await admin.list_topics() if t.startswith(f"{prefix}.")}
    finally:
        await admin.close()


@pytest.mark.parametrize(
    "setting", [{"replication_factor": 2}, {"min_insync_replicas": 2}], ids=["rf", "min-isr"]
)
def test_a_replication_the_one_broker_cannot_meet_is_refused_and_creates_nothing(
    broker: BrokerHandle, setting: dict[str, int]
) -> None:
    prefix = f"refused{next(_prefixes)}"
    with pytest.raises(TopicsRefused, match=f"needs at least 2 brokers.*{broker.bootstrap} has 1"):
        asyncio.run(ensure_topics(broker.bootstrap, Topics(prefix), _spec(**setting)))
    assert asyncio.run(_existing(broker.bootstrap, prefix)) == set()


def test_an_unset_replication_uses_the_clusters_default_and_creates_every_topic(
    broker: BrokerHandle,
) -> None:
    prefix = f"defaults{next(_prefixes)}"
    topics = Topics(prefix)
    spec = _spec()
    assert spec.topics.replication_factor is None
    created = asyncio.run(ensure_topics(broker.bootstrap, topics, spec))
    wanted = set(topics.system() + [topics.event(t) for t in spec.agent_topics])
    assert set(created) == wanted
    assert asyncio.run(_existing(broker.bootstrap, prefix)) == wanted
    assert asyncio.run(ensure_topics(broker.bootstrap, topics, spec)) == []


def test_choreo_topics_refuses_an_unmeetable_replication_on_one_line_and_exits_1(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    source = example_mesh("writer-editor")
    shutil.copytree(source.parent, tmp_path / "mesh")
    mesh = tmp_path / "mesh" / source.name
    raw = yaml.safe_load(mesh.read_text())
    raw["topics"] = {"replication_factor": 5}
    mesh.write_text(yaml.safe_dump(raw))
    prefix = f"cli{next(_prefixes)}"
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "CHOREO_TOPIC_PREFIX": prefix}
    done = subprocess.run(
        [*CHOREO, "topics", "--mesh", str(mesh)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert "topics.replication_factor 5 needs at least 5 brokers" in line
    assert asyncio.run(_existing(broker.bootstrap, prefix)) == set()
