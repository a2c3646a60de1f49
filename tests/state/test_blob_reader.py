"""Reading values by reference from the blob topic (choreo.kafka.blobs) on the real broker: a
chunk whose record compaction removed is found at its newer copy further on, and a chunk that
is not there at all is refused, naming it."""

from __future__ import annotations

import asyncio
import os

import pytest

from choreo.kafka.blobs import BlobReader
from choreo.kafka.broker import BrokerHandle
from choreo.kafka.clients import make_producer
from choreo.kafka.topics import ensure_topics
from choreo.observe.settings import Settings
from choreo.schemas.blobs import BlobMismatch, Held, split
from choreo.schemas.ids import new_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh
from tests.state.test_big_values import MESH

pytestmark = pytest.mark.integration

VALUE = [f"line {n}" for n in range(50)]


def test_a_chunk_moved_by_compaction_is_read_at_its_newer_copy(broker: BrokerHandle) -> None:
    asyncio.run(_read_after_a_decoy(broker.bootstrap))


def test_a_chunk_not_on_the_topic_is_refused_naming_it(broker: BrokerHandle) -> None:
    asyncio.run(_read_missing(broker.bootstrap))


async def _topic(bootstrap: str) -> tuple[Settings, str]:
    settings = Settings(topic_prefix=f"blobs{os.getpid()}x{new_id()[:8]}")
    topics = Topics(settings.topic_prefix)
    await ensure_topics(bootstrap, topics, load_mesh(MESH), only=[topics.blobs])
    return settings, topics.blobs


async def _read_after_a_decoy(bootstrap: str) -> None:
    settings, topic = await _topic(bootstrap)
    ref, chunks = split(VALUE, 64, topic, 0)
    producer = make_producer(bootstrap, "test-blob-reader")
    await producer.start()
    try:
        # what a reference names after compaction: another record at its offset, its own later
        decoy = await producer.send_and_wait(topic, b"other", key=b"other", partition=0)
        for chunk, data in chunks:
            chunk.offset = decoy.offset  # every chunk named where the decoy lies
            await producer.send_and_wait(topic, data, key=chunk.sha256.encode(), partition=0)
    finally:
        await producer.stop()
    reader = BlobReader(bootstrap, settings, "test-blob-reader")
    try:
        assert await reader.value(Held(ref)) == VALUE
    finally:
        await reader.close()


async def _read_missing(bootstrap: str) -> None:
    settings, topic = await _topic(bootstrap)
    ref, _ = split(VALUE, 64, topic, 0)
    ref.chunks[0].offset = 0
    reader = BlobReader(bootstrap, settings, "test-blob-reader")
    try:
        with pytest.raises(BlobMismatch, match=ref.chunks[0].sha256):
            await reader.value(Held(ref))
    finally:
        await reader.close()
