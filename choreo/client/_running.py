"""Whether the named mesh is the one running, and what became of one submitted task.

A trace id names a trace, not a submission: a second task with a used id is dead-lettered by
the keeper while the id's old result stays on the results topic. So the fate of a submission is
read from where the keeper says it came from: the admitted snapshot's ``origin`` is the task's
``topic/partition/offset``, and a refused task's dead letter carries that same place (the task
record itself, or the admit envelope naming it in its payload).
"""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from choreo.client._reader import Reader
from choreo.client.errors import MeshNotRunning
from choreo.client.reports import Admission, Submission
from choreo.kafka.clients import transient
from choreo.schemas import DeadLetter, DecodeError, Envelope, Snapshot, decode
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec


async def ensure_running(
    reader: Reader,
    admin: AIOKafkaAdminClient,
    spec: MeshSpec,
    topics: Topics,
    bootstrap: str,
    join_s: float,
) -> None:
    """Raise MeshNotRunning unless ``spec``'s mesh runs under ``topics``' prefix: every topic of
    it exists, and the keeper and every agent of it have a live consumer in their groups.

    Nothing creates a mesh's topics to submit to it: a task sent where no agent of that mesh
    listens would wait forever, or be run by another mesh's agents. Topics outlive the mesh
    that made them, so their presence alone says nothing of what runs now; a consumer group
    with members does (on Apache Kafka a member that died leaves it after the session timeout;
    the embedded broker keeps it, so there a mesh stopped under a broker that runs on still
    passes). A group still empty is asked again for up to ``join_s`` seconds: a service just
    started takes a few seconds to join.
    """
    wanted = {topics.tasks, topics.results} | {topics.event(t) for t in spec.agent_topics}
    present = await reader.topics()
    where = f"mesh {spec.name!r} is not running under topic prefix {topics.prefix!r} on {bootstrap}"
    hint = "(start it with `choreo up`, or set CHOREO_TOPIC_PREFIX to the prefix it runs under)"
    if missing := sorted(wanted - present):
        raise MeshNotRunning(f"{where}: no topic {', '.join(missing)} {hint}")
    services = {
        topics.keeper_group: "the keeper",
        **{topics.agent_group(a.name): f"agent {a.name}" for a in spec.agents},
    }
    deadline = time.monotonic() + join_s
    while True:
        idle = await _without_members(admin, services)
        if not idle or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)  # a mesh just started: its consumers are joining
    if idle:
        raise MeshNotRunning(
            f"{where}: no live consumer for {', '.join(idle)} (its consumer "
            f"group has no member) {hint}"
        )


async def _without_members(admin: AIOKafkaAdminClient, groups: dict[str, str]) -> list[str]:
    """The names (values of ``groups``, keyed by group id) whose consumer group does not
    exist or has no member."""
    idle = []
    for group, name in groups.items():  # one group a request: some brokers garble more
        try:
            responses = await admin.describe_consumer_groups([group])
        except KafkaError as exc:
            if not transient(exc):
                raise
            # a fresh broker still electing its group coordinator: no member known yet
            idle.append(name)
            continue
        # each entry: (error_code, group_id, state, protocol_type, protocol, members, ...)
        if not any(
            entry[0] == 0 and entry[1] == group and entry[5] and entry[2] not in ("Dead", "Empty")
            for response in responses
            for entry in response.groups
        ):
            idle.append(name)
    return idle


def _names_origin(letter: DeadLetter, sent: Submission) -> bool:
    """True when ``letter`` is the refusal of the task ``sent``."""
    if (letter.topic, letter.partition, letter.offset) == (sent.topic, sent.partition, sent.offset):
        return True
    try:
        envelope = decode(letter.original, Envelope)
    except DecodeError:
        return False
    return envelope.payload.get("origin") == sent.origin


async def admission(reader: Reader, topics: Topics, sent: Submission, within_s: float) -> Admission:
    """Whether the keeper admitted or refused ``sent``, asking every 0.3 s for up to
    ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        snapshots = await reader.typed(topics.state, sent.trace_id, Snapshot, missing_ok=True)
        if any(s.origin == sent.origin for s in snapshots):
            return Admission("admitted")
        for letter in await reader.typed(topics.dlq, sent.trace_id, DeadLetter, missing_ok=True):
            if _names_origin(letter, sent):
                return Admission("dead-lettered", letter.reason)
        if time.monotonic() > deadline:
            return Admission("unknown")
        await asyncio.sleep(0.3)  # the keeper admits within a poll; asking again is cheap
