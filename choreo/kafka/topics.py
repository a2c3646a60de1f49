"""Topic creation: every system and agent topic of a mesh, with the same partition count."""

from __future__ import annotations

import logging
from collections.abc import Collection

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from choreo.kafka.security import KafkaSecurity, make_admin
from choreo.schemas.topics import Topics
from choreo.spec.mesh import MeshSpec

log = logging.getLogger(__name__)


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
    just those of them (a service under least privilege sees no other topic).
    """
    names = topics.system() + [topics.event(t) for t in spec.agent_topics]
    if only is not None:
        names = [name for name in names if name in only]
    admin = make_admin(bootstrap, security)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=name,
                num_partitions=spec.topics.partitions,
                replication_factor=spec.topics.replication_factor,
                topic_configs=topics.configs(name),
            )
            for name in names
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                log.info("topics created concurrently by another process")
        return [t.name for t in missing]
    finally:
        await admin.close()
