"""Topic creation: every system and agent topic of a mesh, with the same partition count.

Nothing is created unless all of it can be: the missing topics are first sent with
``validate_only`` (CreateTopics, KIP-108), so a replication factor or ``min.insync.replicas``
the cluster cannot meet is refused with the broker's own reason before any topic exists or any
service starts; then they are created, and each topic's result is checked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code

from choreo.kafka.errors import TopicsRefused
from choreo.kafka.security import KafkaSecurity, make_admin
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec, TopicsSpec

log = logging.getLogger(__name__)

#: How long topic creation waits for the cluster's metadata to list the topics it created,
#: and how often it asks meanwhile.
LISTED_TIMEOUT_S = 30.0
LISTED_POLL_S = 0.1

#: CreateTopics error codes that mean "nothing to do": TOPIC_ALREADY_EXISTS (another process
#: created it between our listing and our request).
_ALREADY_EXISTS = 36
_NOT_AUTHORIZED = 29  # TOPIC_AUTHORIZATION_FAILED
#: "The cluster's default" for a topic's replication factor (CreateTopics v4+, KIP-464).
_CLUSTER_DEFAULT = -1


def new_topics(names: list[str], topics: Topics, spec: TopicsSpec) -> list[NewTopic]:
    """The requests for ``names``: the spec's partition count; its replication factor and
    ``min.insync.replicas`` only where it sets them."""

    def configs(name: str) -> dict[str, str]:
        extra = {}
        if spec.min_insync_replicas is not None:
            extra["min.insync.replicas"] = str(spec.min_insync_replicas)
        return {**topics.configs(name), **extra}

    return [
        NewTopic(
            name=name,
            num_partitions=spec.partitions,
            replication_factor=spec.replication_factor or _CLUSTER_DEFAULT,
            # aiokafka wants (empty) assignments beside a -1: the broker then places replicas
            replica_assignments=None if spec.replication_factor else {},
            topic_configs=configs(name),
        )
        for name in names
    ]


def refusals(response: Any) -> dict[str, str]:
    """Topic name → the broker's reason, for every topic a CreateTopics answer refused
    (an existing topic is no refusal). The reason is the broker's message when it gives one
    (v1+), else the error's name."""
    refused = {}
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code in (0, _ALREADY_EXISTS):
            continue
        message = entry[2] if len(entry) > 2 and entry[2] else ""
        refused[name] = f"{for_code(code).__name__}: {message}".rstrip(": ")
    return refused


def _refused(refused: dict[str, str], created: bool) -> TopicsRefused:
    """One line: how many topics, and the reason (the same for all, as it mostly is)."""
    reasons = sorted(set(refused.values()))
    what = "created" if created else "refused before any was created"
    names = ", ".join(sorted(refused))
    return TopicsRefused(
        f"the broker refused {len(refused)} topic(s) ({what}): {'; '.join(reasons)} [{names}]"
    )


async def _brokers(admin: AIOKafkaAdminClient) -> int:
    return len((await admin.describe_cluster())["brokers"])


def _unmet(spec: TopicsSpec, brokers: int) -> str | None:
    """What of ``spec`` a cluster of ``brokers`` cannot meet, or ``None``. Checked here as
    well as by the broker: Kafka accepts a ``min.insync.replicas`` above the replica count
    (then refuses every acks=all write), and the embedded broker any replication factor."""
    for name, value in (
        ("replication_factor", spec.replication_factor),
        ("min_insync_replicas", spec.min_insync_replicas),
    ):
        if value is not None and value > brokers:
            return f"topics.{name} {value} needs at least {value} brokers"
    return None


async def ensure_topics(
    bootstrap: str,
    topics: Topics,
    spec: MeshSpec,
    security: KafkaSecurity | None = None,
    only: Collection[str] | None = None,
) -> list[str]:
    """Create every system and agent topic the mesh needs; return the ones created.

    Every topic gets the same partition count, so a trace id (the key everywhere) lands on the
    same partition number of every topic and one keeper owns a trace end to end. ``only``:
    just those of them, for a service creating the topics it uses. Under least privilege it
    sees only the topics it may use, and a topic it may neither see nor create is left to an
    administrator (``choreo topics``), not refused: the service's first read or write of it
    then names the right it lacks. Raises :class:`TopicsRefused` with the broker's reason
    when it refuses any other topic; when the refusal comes from the validation pass, no
    topic was created.
    """
    names = topics.system() + [topics.event(t) for t in spec.agent_topics]
    if only is not None:
        names = [name for name in names if name in only]
    admin = make_admin(bootstrap, security)
    await admin.start()
    try:
        wanted = spec.topics
        existing = set(await admin.list_topics())
        missing = new_topics([n for n in names if n not in existing], topics, wanted)
        if not missing:
            return []
        brokers = await _brokers(admin)
        if unmet := _unmet(wanted, brokers):
            raise TopicsRefused(f"{unmet}; the cluster at {bootstrap} has {brokers}")
        validated = await admin.create_topics(missing, validate_only=True)
        hidden: set[str] = set()
        if only is not None:  # a topic this service may neither see nor create: an admin's
            hidden = {e[0] for e in validated.topic_errors if e[1] == _NOT_AUTHORIZED}
            missing = [t for t in missing if t.name not in hidden]
        if checked := {n: r for n, r in refusals(validated).items() if n not in hidden}:
            raise _refused(checked, created=False)
        if not missing:
            return []
        if failed := refusals(await admin.create_topics(missing)):
            raise _refused(failed, created=True)
        created = [t.name for t in missing]
        await _until_listed(admin, created)
        return created
    finally:
        await admin.close()


async def _until_listed(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = LISTED_TIMEOUT_S
) -> None:
    """Return once the cluster's metadata lists every one of ``names``.

    A broker answers CreateTopics once the controller has the topics, and learns of them a
    moment later (Kafka's AdminClient documents the delay), so a client that asks straight
    after may not find them. Past ``timeout_s`` this logs and returns: a client's own
    metadata refresh still finds them later.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not set(names) <= set(await admin.list_topics()):
        if loop.time() >= deadline:
            log.warning("created topics not yet in the cluster's metadata", extra={"topics": names})
            return
        await asyncio.sleep(LISTED_POLL_S)  # polling the metadata, bounded by the deadline


async def replication_factor(
    bootstrap: str, spec: TopicsSpec, security: KafkaSecurity | None = None
) -> int:
    """The replication factor topics get: the spec's, else the cluster's
    ``default.replication.factor`` (read from a broker's config), for clients such as faust
    that must name one. A broker that does not answer DescribeConfigs (the embedded one, a
    single node) gets 1."""
    if spec.replication_factor is not None:
        return spec.replication_factor
    admin = make_admin(bootstrap, security)
    await admin.start()
    try:
        node = (await admin.describe_cluster())["brokers"][0]["node_id"]
        resource = ConfigResource(
            ConfigResourceType.BROKER, str(node), {"default.replication.factor": None}
        )
        [answer] = await admin.describe_configs([resource])
        for entry in answer.resources[0][4]:
            if entry[0] == "default.replication.factor":
                return int(entry[1])
    except KafkaError as exc:
        log.debug("no broker config to read, one replica", extra={"reason": str(exc)})
    finally:
        await admin.close()
    return 1
