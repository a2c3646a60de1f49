"""What became of one submitted task, and whether the named mesh is the one running.

A trace id names a trace, not a submission: a second task with a used id is dead-lettered by
the keeper while the id's old result stays on the results topic. So the fate of a submission is
read from where the keeper says it came from: the admitted snapshot's ``origin`` is the task's
``topic/partition/offset``, and a refused task's dead letter carries that same place (the task
record itself, or the admit envelope naming it in its payload).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from choreo.client import queries
from choreo.kafka.clients import make_consumer, transient
from choreo.observe.settings import Settings
from choreo.schemas import DeadLetter, Envelope, Snapshot, decode
from choreo.schemas.codec import DecodeError
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec

#: Seconds ``check_running`` waits for the services of a mesh just started to join their
#: consumer groups before it says the mesh is not running.
JOIN_S = 60.0


class MeshNotRunning(LookupError):
    """The broker has no topics of the named mesh under the configured prefix."""


@dataclass(frozen=True)
class Fate:
    """``admitted``, ``dead-lettered`` (with the keeper's reason) or ``unknown`` (no word yet)."""

    status: str
    reason: str | None = None


async def check_running(spec: MeshSpec, bootstrap: str, settings: Settings) -> None:
    """Raise MeshNotRunning unless ``spec``'s mesh runs under the prefix: every topic of it
    exists, and the keeper and every agent of it have a live consumer in their groups.

    The CLI never creates a mesh's topics to submit to it: a task sent where no agent of that
    mesh listens would wait forever, or be run by another mesh's agents. Topics outlive the
    mesh that made them, so their presence alone says nothing of what runs now; a consumer
    group with members does (on Apache Kafka a member that died leaves it after the session
    timeout; the embedded broker keeps it, so there a mesh stopped under a broker that runs on
    still passes). A group still empty is asked again for up to ``JOIN_S`` seconds: a service
    just started takes a few seconds to join.
    """
    topics = Topics(settings.topic_prefix)
    wanted = {topics.tasks, topics.results} | {topics.event(t) for t in spec.agent_topics}
    consumer = make_consumer(bootstrap, settings, group_id=None, client_id="choreo-cli")
    await consumer.start()
    try:
        present = await consumer.topics()
    finally:
        await consumer.stop()
    where = f"mesh {spec.name!r} is not running under topic prefix {topics.prefix!r} on {bootstrap}"
    hint = "(start it with `choreo up`, or set CHOREO_TOPIC_PREFIX to the prefix it runs under)"
    if missing := sorted(wanted - present):
        raise MeshNotRunning(f"{where}: no topic {', '.join(missing)} {hint}")
    services = {
        f"{topics.prefix}.keeper": "the keeper",
        **{f"{topics.prefix}.agent.{a.name}": f"agent {a.name}" for a in spec.agents},
    }
    deadline = time.monotonic() + JOIN_S
    while True:
        idle = await _without_members(bootstrap, services)
        if not idle or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)  # a mesh just started: its consumers are joining
    if idle:
        raise MeshNotRunning(
            f"{where}: no live consumer for {', '.join(idle)} (its consumer "
            f"group has no member) {hint}"
        )


async def _without_members(bootstrap: str, groups: dict[str, str]) -> list[str]:
    """The names (values of ``groups``, keyed by group id) whose consumer group does not
    exist or has no member."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="choreo-cli")
    await admin.start()
    try:
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
                entry[0] == 0
                and entry[1] == group
                and entry[5]
                and entry[2] not in ("Dead", "Empty")
                for response in responses
                for entry in response.groups
            ):
                idle.append(name)
        return idle
    finally:
        await admin.close()


def _names_origin(letter: DeadLetter, sent: queries.Sent) -> bool:
    """True when ``letter`` is the refusal of the task ``sent``."""
    if (letter.topic, letter.partition, letter.offset) == (sent.topic, sent.partition, sent.offset):
        return True
    try:
        envelope = decode(letter.original, Envelope)
    except DecodeError:
        return False
    return envelope.payload.get("origin") == sent.origin


async def fate(bootstrap: str, settings: Settings, sent: queries.Sent, within_s: float) -> Fate:
    """Whether the keeper admitted or refused ``sent``, waiting up to ``within_s`` seconds."""
    topics = Topics(settings.topic_prefix)
    deadline = time.monotonic() + within_s
    while True:
        snapshots = await _typed(bootstrap, settings, topics.state, sent.trace_id, Snapshot)
        if any(s.origin == sent.origin for s in snapshots):
            return Fate("admitted")
        for letter in await _typed(bootstrap, settings, topics.dlq, sent.trace_id, DeadLetter):
            if _names_origin(letter, sent):
                return Fate("dead-lettered", letter.reason)
        if time.monotonic() > deadline:
            return Fate("unknown")
        await asyncio.sleep(0.3)  # the keeper admits within a poll; asking again is cheap


async def _typed(
    bootstrap: str, settings: Settings, topic: str, trace_id: str, record_type: type[queries.R]
) -> list[queries.R]:
    """The trace's records of one type; none while the topic does not exist yet."""
    try:
        return await queries.trace_typed(bootstrap, settings, topic, trace_id, record_type)
    except queries.TraceNotFound:
        return []
