"""Each agent of a running mesh as its consumer group sees it: live replicas and lag.

An agent's replicas are the members of its group now; its lag is, over every partition of
the topics it subscribes to, the end offset less the group's committed offset (the whole
partition where the group has committed nothing yet).
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from choreo.client._reader import Reader
from choreo.client.reports import AgentGroup
from choreo.kafka.clients import transient
from choreo.schemas.topics import Topics
from choreo.spec.mesh import AgentSpec, MeshSpec


async def agent_groups(
    reader: Reader, admin: AIOKafkaAdminClient, spec: MeshSpec, topics: Topics
) -> list[AgentGroup]:
    """One ``AgentGroup`` per agent of ``spec``, in the spec's order."""
    return [await _group(reader, admin, agent, topics) for agent in spec.agents]


async def _group(
    reader: Reader, admin: AIOKafkaAdminClient, agent: AgentSpec, topics: Topics
) -> AgentGroup:
    group = f"{topics.prefix}.agent.{agent.name}"
    ends = await reader.ends(*(topics.event(e) for e in agent.subscribe))
    members = 0
    try:
        for response in await admin.describe_consumer_groups([group]):
            for entry in response.groups:  # (error_code, group_id, state, ..., members, ...)
                if entry[0] == 0 and entry[1] == group:
                    members = len(entry[5])
        # partitions named: the embedded broker garbles the answer for "all of them"
        committed = await admin.list_consumer_group_offsets(group, partitions=list(ends))
    except KafkaError as exc:
        if not transient(exc):
            raise
        committed = {}  # a broker still electing its coordinator: nothing known yet
    lag = 0
    for part, end in ends.items():
        done = committed.get(part)
        lag += max(0, end - (done.offset if done is not None and done.offset >= 0 else 0))
    return AgentGroup(
        agent=agent.name,
        group=group,
        subscribes=tuple(agent.subscribe),
        replicas=members,
        lag=lag,
    )
