"""Least privilege: the Kafka ACLs each service of a mesh needs, and nothing more.

:func:`mesh_acls` derives them from the spec and the topic prefix, following what each service
reads and writes (docs/ARCHITECTURE.md, "Topics" and "Delivery guarantees"):

- the keeper reads tasks, outbox and control in its group, and state, blobs and results when it
  takes a partition over; it alone writes state, blobs, results, hops, escalations and
  conflicts, the
  events agents subscribe to, and the outbox's admissions; it asks its inputs' record limit
  (DescribeConfigs) and writes transactions under ``<prefix>.keeper.`` ids;
- an agent reads its subscribed event topics in its own group (and the blob topic, for state
  values by reference) and writes only the outbox
  (and the DLQ), under ``<prefix>.agent.<name>.`` transactional ids;
- the watchdog (faust) reads hops and state in its group ``<prefix>-watchdog``, writes control
  verdicts, and owns the topics faust makes for itself (``<prefix>-watchdog-`` : its table's
  changelog, its leader topic), which it creates; when the spec sets no replication factor
  it reads the cluster's ``default.replication.factor`` for them (DescribeConfigs on the
  cluster: faust must name one);
- the client (``choreo`` commands, ``choreo.Client``) reads the mesh's topics, writes tasks,
  control (halts) and escalations (resolutions), and describes the services' groups.

Every consumer may dead-letter, so every service writes the DLQ. Describe is implied by read
and write (Kafka's authorizer), so it is never granted on its own but for the client's groups.
Creating the mesh's topics is left to an administrator (``choreo topics`` run by a principal
with Create); :func:`apply` creates ACLs through the admin API (CreateAcls).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import CreateAclsRequest, DescribeAclsRequest

from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec
from choreo.spec.watchdog import app_id

Resource = Literal["TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID"]
Pattern = Literal["LITERAL", "PREFIXED"]
Operation = Literal["READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS"]

# The protocol's numbers (Kafka's ResourceType, PatternType, AclOperation, AclPermissionType).
_RESOURCE = {"TOPIC": 2, "GROUP": 3, "CLUSTER": 4, "TRANSACTIONAL_ID": 5}
#: The one name of the cluster resource (Kafka's ``Resource.CLUSTER_NAME``).
CLUSTER = "kafka-cluster"
_PATTERN = {"LITERAL": 3, "PREFIXED": 4}
_OPERATION = {"READ": 3, "WRITE": 4, "CREATE": 5, "DESCRIBE": 8, "DESCRIBE_CONFIGS": 10}
_ALLOW, _ANY, _ANY_HOST = 3, 1, "*"


@dataclass(frozen=True, order=True)
class Acl:
    """One allow rule for a service: ``operation`` on ``resource`` named ``name``, matched
    literally or as a prefix (Kafka's ResourcePattern)."""

    resource: Resource
    pattern: Pattern
    name: str
    operation: Operation

    def __str__(self) -> str:
        star = "*" if self.pattern == "PREFIXED" else ""
        return f"{self.operation} {self.resource} {self.name}{star}"


def _topics(operation: Operation, names: Iterable[str]) -> list[Acl]:
    return [Acl("TOPIC", "LITERAL", name, operation) for name in names]


def _consumer(group: str, *, transactional: bool) -> list[Acl]:
    """A group member's rights: its group, and its transactions' ids ``<group>.<unit>``."""
    acls = [Acl("GROUP", "LITERAL", group, "READ")]
    if transactional:
        acls.append(Acl("TRANSACTIONAL_ID", "PREFIXED", f"{group}.", "WRITE"))
    return acls


def mesh_acls(
    spec: MeshSpec, topics: Topics, *, watchdog: bool = True, transactions: bool = True
) -> dict[str, list[Acl]]:
    """Each service's ACLs, sorted, by service name: ``keeper``, ``agent:<name>`` per agent,
    ``watchdog`` (when run), ``client``. ``transactions``: the broker has them (Apache
    Kafka), so the keeper and agents write under transactional ids."""
    subscribed = sorted({t for agent in spec.agents for t in agent.subscribe})
    keeper_in = [topics.tasks, topics.outbox, topics.control]
    services: dict[str, list[Acl]] = {
        "keeper": [
            *_topics("READ", [*keeper_in, topics.state, topics.blobs, topics.results]),
            *_topics("DESCRIBE_CONFIGS", keeper_in),
            *_topics(
                "WRITE",
                [
                    topics.outbox,
                    topics.state,
                    topics.blobs,
                    topics.results,
                    topics.hops,
                    topics.escalations,
                    topics.conflicts,
                    topics.dlq,
                    *(topics.event(t) for t in subscribed),
                ],
            ),
            *_consumer(topics.keeper_group, transactional=transactions),
        ]
    }
    for agent in spec.agents:
        services[f"agent:{agent.name}"] = [
            *_topics("READ", [*(topics.event(t) for t in agent.subscribe), topics.blobs]),
            *_topics("WRITE", [topics.outbox, topics.dlq]),
            *_consumer(topics.agent_group(agent.name), transactional=transactions),
        ]
    if watchdog:
        group = app_id(topics.prefix)
        own = f"{group}-"  # faust's own topics: its table's changelog, its leader topic
        services["watchdog"] = [
            *_topics("READ", [topics.hops, topics.state]),
            *_topics("WRITE", [topics.control, topics.dlq]),
            Acl("GROUP", "LITERAL", group, "READ"),
            *(Acl("TOPIC", "PREFIXED", own, op) for op in ("READ", "WRITE", "CREATE")),
        ]
        if spec.topics.replication_factor is None:  # choreo.kafka.topics.replication_factor
            services["watchdog"].append(Acl("CLUSTER", "LITERAL", CLUSTER, "DESCRIBE_CONFIGS"))
    groups = [topics.keeper_group, *(topics.agent_group(a.name) for a in spec.agents)]
    services["client"] = [
        *_topics("READ", topics.system()),
        *_topics("WRITE", [topics.tasks, topics.control, topics.escalations]),
        *(Acl("GROUP", "LITERAL", g, "DESCRIBE") for g in groups),
    ]
    return {name: sorted(set(acls)) for name, acls in services.items()}


def service_topics(spec: MeshSpec, topics: Topics, service: str) -> set[str]:
    """The mesh topics ``service`` (a key of :func:`mesh_acls`: ``keeper``, ``agent:<name>``,
    ``watchdog``, ``client``) reads or writes: the ones its ACLs name.

    Raises ``KeyError`` for a service the mesh does not have."""
    rules = mesh_acls(spec, topics)[service]
    return {r.name for r in rules if r.resource == "TOPIC" and r.pattern == "LITERAL"}


async def apply(
    admin: AIOKafkaAdminClient, principals: Mapping[str, str], acls: Mapping[str, list[Acl]]
) -> int:
    """Create, through ``admin``, each ACL of every service named in ``principals`` (service
    name → principal such as ``User:keeper``), allowed from any host; return how many.
    Creating an ACL that exists is a no-op on Kafka.

    Raises the broker's error (``ClusterAuthorizationFailedError``: ``admin`` may not alter
    ACLs) for the first rule it refuses.
    """
    created = 0
    for service, principal in principals.items():
        for acl in acls[service]:
            # aiokafka has the request but no admin method for it
            response = await admin._send_request(
                CreateAclsRequest(
                    _RESOURCE[acl.resource],
                    acl.name,
                    _PATTERN[acl.pattern],
                    principal,
                    _ANY_HOST,
                    _OPERATION[acl.operation],
                    _ALLOW,
                )
            )
            for error_code, message in response.creation_responses:
                if error_code:
                    raise for_code(error_code)(f"{principal}: {acl}: {message}")
            created += 1
    return created


async def granted(admin: AIOKafkaAdminClient, principal: str) -> set[Acl] | None:
    """The allow rules the cluster holds for ``principal`` on topics, groups, the cluster and
    transactional ids; ``None`` when the cluster has no authorizer (or will not say)."""
    response = await admin._send_request(
        DescribeAclsRequest(_ANY, None, _ANY, principal, None, _ANY, _ALLOW)
    )
    if response.error_code:
        return None
    names = {number: name for name, number in _RESOURCE.items()}
    patterns = {number: name for name, number in _PATTERN.items()}
    operations = {number: name for name, number in _OPERATION.items()}
    found = set()
    for resource, name, pattern, entries in response.resources:
        for _, _, operation, _ in entries:
            if resource in names and pattern in patterns and operation in operations:
                found.add(Acl(names[resource], patterns[pattern], name, operations[operation]))  # type: ignore[arg-type]
    return found
