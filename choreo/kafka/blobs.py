"""Reading big state values by reference (choreo.schemas.blobs) from the blob topic.

A :class:`BlobReader` fetches each chunk a reference names with one seek to its partition and
offset, checks its key and hash, and keeps recent chunks (up to :data:`CACHE_BYTES`): a list
grown at its end shares all chunks but its last with the version before, so a reader that
follows a trace fetches about one chunk per version. If compaction removed the record at the
offset (the keeper wrote the same chunk again later, say after a restart), the reader reads on
from there to the chunk's newer copy.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from choreo.kafka.clients import make_consumer
from choreo.observe.settings import Settings
from choreo.schemas.blobs import BlobMismatch, Chunk, Held, join, refs_in

#: Bytes of chunks a reader keeps, most recently used first.
CACHE_BYTES = 64 * 1024 * 1024
#: How long one fetch of a chunk waits for data, in ms (a fetch that returns nothing past the
#: partition's end means the chunk is missing).
FETCH_WAIT_MS = 500


class BlobReader:
    """Resolves references in state on ``bootstrap``'s blob topics; its consumer (no group,
    ``read_committed`` on Apache Kafka) starts on first use and stops with :meth:`close`.

    Raises :class:`~choreo.schemas.blobs.BlobMismatch` for a chunk missing or not matching its
    hash, and the client's ``KafkaError`` when the broker fails."""

    def __init__(self, bootstrap: str, settings: Settings, client_id: str) -> None:
        self._bootstrap = bootstrap
        self._settings = settings
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0
        #: One fetch at a time: steps run concurrently, and each fetch seeks the one consumer.
        self._fetching = asyncio.Lock()

    async def state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """``state`` with every reference replaced by its value (verified); the same dict's
        contents when it holds none."""
        resolved = dict(state)
        for name, held in refs_in(state):
            resolved[name] = await self.value(held)
        return resolved

    async def value(self, held: Held) -> Any:
        """The value ``held`` stands for, every chunk and the whole checked against its
        reference."""
        ref = held.ref
        chunks = {c.sha256: await self._chunk(ref.topic, c) for c in ref.chunks}
        return held.value(join(ref, lambda c: chunks[c.sha256]))

    async def _chunk(self, topic: str, chunk: Chunk) -> bytes:
        async with self._fetching:
            data = self._cache.get(chunk.sha256)
            if data is not None:
                self._cache.move_to_end(chunk.sha256)
                return data
            return await self._fetch(topic, chunk)

    async def _fetch(self, topic: str, chunk: Chunk) -> bytes:
        """Read ``chunk`` from ``topic`` at its offset, or from there on to its key."""
        consumer = await self._started()
        tp = TopicPartition(topic, chunk.partition)
        if tp not in consumer.assignment():
            consumer.assign([*consumer.assignment(), tp])
        consumer.seek(tp, chunk.offset)
        key = chunk.sha256.encode()
        while True:
            records = (await consumer.getmany(tp, timeout_ms=FETCH_WAIT_MS)).get(tp, [])
            for record in records:
                if record.key == key and record.value is not None:
                    self._keep(chunk.sha256, record.value)
                    return record.value
            end = consumer.highwater(tp)
            if not records and end is not None and await consumer.position(tp) >= end:
                raise BlobMismatch(f"blob chunk {chunk.sha256} is not on {topic}")

    def _keep(self, sha256: str, data: bytes) -> None:
        self._cache[sha256] = data
        self._cached += len(data)
        while self._cached > CACHE_BYTES:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = make_consumer(
                self._bootstrap, self._settings, group_id=None, client_id=self._client_id
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        """Stop the consumer, if it started."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
