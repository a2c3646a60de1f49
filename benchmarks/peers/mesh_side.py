"""The workloads on Choreo Mesh: each mesh runs as real processes on a real broker, and a task
is timed on the client, from its produce to the arrival of its terminal record."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from aiokafka import TopicPartition
from workloads import MESHES

from choreo.kafka.clients import make_consumer, make_producer, partitions_of
from choreo.local.launch import start_mesh
from choreo.observe.settings import Settings
from choreo.schemas import Task, TerminalResult, decode, encode
from choreo.schemas.ids import new_id
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh


class MeshClient:
    """Submits tasks to one running mesh and resolves each on its terminal record."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.settings = Settings(topic_prefix=prefix)
        self.topics = Topics(prefix)
        self.producer = make_producer(bootstrap, "peer-bench")
        self.consumer = make_consumer(
            bootstrap, self.settings, group_id=None, client_id="peer-bench"
        )
        self.waiting: dict[str, asyncio.Future[TerminalResult]] = {}
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        parts = [
            TopicPartition(self.topics.results, p)
            for p in await partitions_of(self.consumer, self.topics.results, 60)
        ]
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    result = decode(record.value or b"", TerminalResult)
                    future = self.waiting.pop(result.trace_id, None)
                    if future is not None and not future.done():
                        future.set_result(result)

    async def run(self, text: str, timeout_s: float = 60.0) -> float:
        """Seconds from submitting one task to its terminal record; it must complete."""
        trace_id = new_id()
        future = self.waiting[trace_id] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        await self.producer.send_and_wait(
            self.topics.tasks, encode(Task(input=text, trace_id=trace_id)), key=trace_id.encode()
        )
        result = await asyncio.wait_for(future, timeout_s)
        elapsed = time.perf_counter() - started
        if result.status != "completed":
            raise RuntimeError(f"mesh task {trace_id} ended {result.status}: {result.reason}")
        return elapsed

    async def stop(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        await self.consumer.stop()
        await self.producer.stop()


@contextmanager
def running_meshes(
    bootstrap: str, base_url: str, workdir: Path, tag: str, workloads: list[str]
) -> Iterator[dict[str, str]]:
    """Start one mesh per distinct spec of ``workloads``; yield workload name → topic prefix."""
    prefixes: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        started: dict[str, str] = {}
        for workload in workloads:
            build = MESHES[workload]
            if build.__name__ in started:
                prefixes[workload] = started[build.__name__]
                continue
            prefix = f"peers-{tag}-{workload}-{int(time.time())}"
            path = workdir / f"{prefix}.yaml"
            path.write_text(yaml.safe_dump(build(base_url)))
            group = start_mesh(
                load_mesh(path),
                path,
                bootstrap,
                Settings(topic_prefix=prefix),
                workdir / "logs" / prefix,
                watchdog=False,
                env={"CHOREO_TOPIC_PREFIX": prefix},
            )
            stack.enter_context(group)
            started[build.__name__] = prefixes[workload] = prefix
        yield prefixes
