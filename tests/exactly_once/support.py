"""What the exactly-once tests share: their own topics on the session's broker."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def new_topics(bootstrap: str, *names: str) -> None:
    """Create ``names``, one partition and one replica each."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1) for name in names])
    finally:
        await admin.close()
