"""Whether a cluster gives a mesh what it needs: the checks behind ``choreo doctor``.

Each check asks the cluster one thing as the client's own principal and says ``ok``, ``warn``
or ``fail`` with what it found: the mesh's topics exist; the ACLs ``choreo acl`` prints are
held (when the cluster lets this principal list ACLs); a transaction can be opened and
aborted (exactly-once on Apache Kafka); the topics' record limit (``max.message.bytes``);
their replication and ``min.insync.replicas``. That authentication works is what let the
client open at all; ``choreo doctor`` reports a refusal there as the first row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from choreo.kafka import acl
from choreo.kafka.clients import make_producer
from choreo.kafka.limits import DEFAULT_MAX_RECORD_BYTES
from choreo.kafka.security import KafkaSecurity
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec

Verdict = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table: what was checked, the verdict, what was found."""

    name: str
    verdict: Verdict
    found: str


async def examine(
    admin: AIOKafkaAdminClient,
    bootstrap: str,
    security: KafkaSecurity,
    spec: MeshSpec,
    topics: Topics,
    principals: dict[str, str],
) -> list[Check]:
    """Every check but authentication and the broker's kind, in the order of the table;
    ``principals`` (service → principal) name whose ACLs to look at."""
    names = topics.system() + [topics.event(t) for t in spec.agent_topics]
    present = set(await admin.list_topics())
    missing = [n for n in names if n not in present]
    checks = [
        Check(
            "topics",
            "fail" if missing else "ok",
            f"missing {', '.join(missing)} (`choreo topics` as a principal allowed to create)"
            if missing
            else f"all {len(names)} present",
        )
    ]
    checks.append(await _acls(admin, spec, topics, principals))
    checks.append(await _transactions(bootstrap, security, topics))
    configs = await _configs(admin, [n for n in names if n in present])
    checks.append(_record_limit(configs))
    checks.append(await _replication(admin, configs, [n for n in names if n in present]))
    return checks


async def _acls(
    admin: AIOKafkaAdminClient, spec: MeshSpec, topics: Topics, principals: dict[str, str]
) -> Check:
    if not principals:
        return Check("acls", "warn", "not checked: name services' principals with --principal")
    rules = acl.mesh_acls(spec, topics)
    lacking: list[str] = []
    for service, principal in sorted(principals.items()):
        try:
            held = await acl.granted(admin, principal)
        except KafkaError as exc:
            return Check("acls", "warn", f"cannot list ACLs here ({type(exc).__name__})")
        if held is None:
            return Check(
                "acls", "warn", "the cluster lists no ACLs (no authorizer, or not allowed)"
            )
        lacking += [
            f"{service} ({principal}): {rule}" for rule in rules[service] if rule not in held
        ]
    if lacking:
        more = f" and {len(lacking) - 3} more" if len(lacking) > 3 else ""
        return Check("acls", "fail", "; ".join(lacking[:3]) + more + " (`choreo acl --apply`)")
    return Check("acls", "ok", f"{', '.join(sorted(principals))} hold every ACL they need")


async def _transactions(bootstrap: str, security: KafkaSecurity, topics: Topics) -> Check:
    # under the keeper's prefix: the id a keeper's ACL covers
    producer = make_producer(
        bootstrap,
        "choreo-doctor",
        transactional_id=f"{topics.keeper_group}.doctor-{uuid.uuid4().hex[:8]}",
        security=security,
    )
    try:
        await producer.start()
        await producer.begin_transaction()
        await producer.abort_transaction()
    except KafkaError as exc:
        return Check(
            "transactions",
            "warn",
            f"refused ({type(exc).__name__}): the mesh runs at-least-once "
            "(CHOREO_EXACTLY_ONCE=off), or grant transactional ids",
        )
    finally:
        await producer.stop()
    return Check("transactions", "ok", "a transaction opened and aborted: exactly-once")


async def _configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's configs, by name; empty where the broker will not say."""
    if not names:
        return {}
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
    except KafkaError:
        return {}
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.resources:  # (error, message, type, name, entries)
            found[resource[3]] = {e[0]: str(e[1]) for e in resource[4] if e[1] is not None}
    return found


def _record_limit(configs: dict[str, dict[str, str]]) -> Check:
    limits = [int(c["max.message.bytes"]) for c in configs.values() if "max.message.bytes" in c]
    if not limits:
        return Check(
            "record size", "warn", "the broker does not say; CHOREO_MAX_RECORD_BYTES applies"
        )
    smallest = min(limits)
    verdict: Verdict = "ok" if smallest >= DEFAULT_MAX_RECORD_BYTES else "warn"
    return Check("record size", verdict, f"smallest max.message.bytes {smallest} bytes")


async def _replication(
    admin: AIOKafkaAdminClient, configs: dict[str, dict[str, str]], names: list[str]
) -> Check:
    if not names:
        return Check("replication", "warn", "no topic to look at")
    described = await admin.describe_topics(names)
    replicas = [
        len(partition["replicas"]) for topic in described for partition in topic["partitions"]
    ]
    isr = [int(c["min.insync.replicas"]) for c in configs.values() if "min.insync.replicas" in c]
    fewest, least_isr = min(replicas, default=0), min(isr, default=1)
    found = f"replicas {fewest}, min.insync.replicas {least_isr}"
    if fewest < 3 or least_isr < 2:
        return Check("replication", "warn", f"{found}: one broker's loss can lose or stop writes")
    return Check("replication", "ok", found)
