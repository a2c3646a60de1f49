"""Does the broker's work per produce + fetch grow with the length of the partition?

One producer and one consumer repeat a mesh step's pattern: produce one small record
(``--size`` bytes, acks=all, no linger), then read it back with a consumer that sits at the
tail of the partitions it is assigned (no group, manual positions), as a mesh consumer polls
the tail. The broker's own CPU time (user + system, ``/proc/<pid>/stat``) is read at the edges
of every range of ``--bucket`` records, so each range reports the broker CPU per round trip,
the round trip's p50 and p90 latency, the fetch requests the consumer sent per round trip and
the client's own CPU per round trip (this process).

Two layouts, run in turn, each on a fresh topic:

- ``one``: every record goes to a topic with one partition, which grows to ``--records``.
- ``spread``: the same number of records go round robin to ``--partitions`` partitions of one
  topic (the consumer assigned, at its tail, the one partition written next), so each
  partition stays ``--partitions`` times shorter while the broker holds as many in all.

If the broker's cost per round trip grows with the length of the partition it reads, ``one``
grows and ``spread`` stays flat; if it grows with all the records the broker holds, both grow.

At the start of each range a probe also costs the two requests apart: ``--probe`` produces
alone (each acknowledged before the next), then ``--probe`` fetches alone of the newest record
(the consumer sought back to it), each as broker CPU per request. The probe's records count in
the partition's length.

    python -m benchmarks.broker_partition_growth --records 10000 --bucket 1000
    python -m benchmarks.broker_partition_growth --broker kafka --records 10000 --bucket 2000
    python -m benchmarks.broker_partition_growth --bootstrap HOST:PORT --broker-pid PID

Without ``--bootstrap`` it starts the broker itself (``--broker embedded``, the default: the
embedded broker of choreo.kafka.broker; ``--broker kafka``: Apache Kafka from its jars) and
stops it at the end. With ``--bootstrap`` the broker's process is the one listening on that
port (found through ``/proc``, so it must be this user's) unless ``--broker-pid`` names it.
The consumer's fetch wait is the mesh's: 10 ms on the embedded broker (its waiting fetches
are not woken by new data), 500 ms on Apache Kafka (they are); aiokafka's ``getone`` sends the
next fetch only when it is called, after the produce was acknowledged, so each round trip is
one produce and one fetch that finds the record there (the fetches column shows it). A record
that does not arrive within ``--give-up-s`` ends the layout, with the partition's high
watermark in the table. Records' bytes are drawn from ``--seed``. Progress goes to stderr,
the table (Markdown) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from choreo.bench.idle import cpu_seconds
from choreo.kafka.broker import ApacheKafka, EmbeddedBroker, broker_kind
from choreo.kafka.clients import KAFKA_FETCH_WAIT_MS
from choreo.observe.settings import Settings

Layout = Literal["one", "spread"]


def listening_pid(port: int) -> int:
    """The process listening on TCP ``port``: the socket's inode in ``/proc/net/tcp*``, then
    the process holding that inode among its file descriptors."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                cells = row.split()
                if int(cells[1].rsplit(":", 1)[1], 16) == port and cells[3] == "0A":
                    inodes.add(f"socket:[{cells[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue  # gone, or not ours
    raise SystemExit(f"no process of this user listens on port {port}: pass --broker-pid")


@dataclass
class Range:
    """What one range of round trips cost: its first and last partition length, and the
    broker's CPU, the client's CPU, the fetches and the latencies of its round trips."""

    start: int
    end: int
    broker_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    fetches: int = 0
    latencies_s: list[float] = field(default_factory=list)
    produce_probe_ms: float | None = None
    fetch_probe_ms: float | None = None
    #: Why the layout ended here (a record not delivered), instead of figures.
    note: str | None = None

    def row(self, partitions: int) -> str:
        if self.note is not None:
            return f"| {self.start:,} | | {self.note} | | | | | | |"
        trips = len(self.latencies_s)
        cuts = statistics.quantiles(self.latencies_s, n=10)
        probe = (
            f"{self.produce_probe_ms:.2f} | {self.fetch_probe_ms:.2f}"
            if self.produce_probe_ms is not None and self.fetch_probe_ms is not None
            else "- | -"
        )
        return (
            f"| {self.start:,}-{self.end:,} | {self.start // partitions:,}-"
            f"{self.end // partitions:,} | {1000 * self.broker_cpu_s / trips:.2f} | "
            f"{statistics.median(self.latencies_s) * 1000:.2f} | {cuts[8] * 1000:.2f} | "
            f"{self.fetches / trips:.2f} | {1000 * self.client_cpu_s / trips:.2f} | {probe} |"
        )


class Undelivered(Exception):
    """A record the broker acknowledged did not reach the consumer in time."""


class RequestCount:
    """Counts the requests a client sends, by kind (``Fetch``, ``Produce``, ...).

    aiokafka has no hook for this: the client's ``send`` is wrapped on the instance.
    """

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        original: Callable[..., Awaitable[Any]] = client.send

        async def send(node_id: int, request: Any, **kwargs: Any) -> Any:
            self.counts[type(request).__name__.split("_")[0].removesuffix("Request")] += 1
            return await original(node_id, request, **kwargs)

        setattr(client, "send", send)  # noqa: B010 - an instance attribute over the method


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def run_layout(
    bootstrap: str,
    broker_pid: int,
    layout: Layout,
    args: argparse.Namespace,
    fetch_wait_ms: int,
) -> list[Range]:
    """Produce and read back ``args.records`` records in ``layout``; the cost per range."""
    partitions = 1 if layout == "one" else args.partitions
    topic = f"growth-{layout}-{os.getpid()}-{time.monotonic_ns()}"
    await create_topic(bootstrap, topic, partitions)
    rng = random.Random(args.seed)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=0, enable_idempotence=False
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=fetch_wait_ms,
        max_poll_records=1,
    )
    await producer.start()
    await consumer.start()
    requests = RequestCount(consumer._client)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    tails = [0] * partitions  # the next offset of each partition
    written = 0

    def follow(tp: TopicPartition) -> None:
        """Assign the consumer ``tp`` alone, at its tail (a fetch then names one partition)."""
        if consumer.assignment() != {tp}:
            consumer.assign([tp])
            consumer.seek(tp, tails[tp.partition])

    async def read(tp: TopicPartition, offset: int) -> Any:
        """The next record the consumer gets; :class:`Undelivered` after ``--give-up-s``."""
        try:
            return await asyncio.wait_for(consumer.getone(tp), args.give_up_s)
        except TimeoutError:
            raise Undelivered(
                f"{layout}: the record at {tp.partition}/{offset} was not delivered within "
                f"{args.give_up_s:g} s (partition high watermark {consumer.highwater(tp)}, "
                f"{written:,} records written)"
            ) from None

    async def trip() -> float:
        """One round trip: produce the next record, read it from the tail; its seconds."""
        nonlocal written
        tp = tps[written % partitions]
        follow(tp)
        began = time.perf_counter()
        meta = await producer.send_and_wait(topic, rng.randbytes(args.size), partition=tp.partition)
        record = await read(tp, meta.offset)
        tails[tp.partition] = meta.offset + 1
        took = time.perf_counter() - began
        if (record.partition, record.offset) != (tp.partition, meta.offset):
            raise SystemExit(f"read {record.partition}/{record.offset}, wrote {meta.offset}")
        written += 1
        return took

    async def probe(into: Range) -> None:
        """Broker CPU per produce alone, then per fetch alone of the newest record."""
        nonlocal written
        tp = tps[written % partitions]
        follow(tp)
        before = cpu_seconds(broker_pid)
        last = 0
        for _ in range(args.probe):
            value = rng.randbytes(args.size)
            last = (await producer.send_and_wait(topic, value, partition=tp.partition)).offset
        middle = cpu_seconds(broker_pid)
        for _ in range(args.probe):
            consumer.seek(tp, last)
            record = await read(tp, last)
            if record.offset != last:
                raise SystemExit(f"probe read {record.offset}, wanted {last}")
        after = cpu_seconds(broker_pid)  # the consumer is at the tail again
        tails[tp.partition] = last + 1
        written += args.probe
        into.produce_probe_ms = 1000 * (middle - before) / args.probe
        into.fetch_probe_ms = 1000 * (after - middle) / args.probe

    ranges: list[Range] = []
    try:
        for _ in range(args.warmup):  # connections, metadata, a JIT's first compilations
            await trip()
        while written < args.records:
            current = Range(start=written, end=0)
            if args.probe:
                await probe(current)
                current.start = written
            fetches = requests.counts["Fetch"]
            broker_before, client_before = cpu_seconds(broker_pid), time.process_time()
            stop = min(args.records, (written // args.bucket + 1) * args.bucket)
            while written < stop:
                current.latencies_s.append(await trip())
            current.broker_cpu_s = cpu_seconds(broker_pid) - broker_before
            current.client_cpu_s = time.process_time() - client_before
            current.fetches = requests.counts["Fetch"] - fetches
            current.end = written
            ranges.append(current)
            print(
                f"{layout}: {written:,}/{args.records:,} records, broker "
                f"{1000 * current.broker_cpu_s / len(current.latencies_s):.2f} ms CPU per trip, "
                f"p50 {1000 * statistics.median(current.latencies_s):.2f} ms",
                file=sys.stderr,
                flush=True,
            )
    except Undelivered as exc:
        print(exc, file=sys.stderr, flush=True)
        ranges.append(Range(start=written, end=written, note=str(exc)))
    finally:
        await consumer.stop()
        await producer.stop()
    return ranges


def table(layout: Layout, ranges: list[Range], partitions: int) -> str:
    head = (
        "| records in broker | records per partition | broker CPU ms/trip | p50 ms | p90 ms "
        "| fetches/trip | client CPU ms/trip | probe: broker CPU ms/produce "
        "| probe: broker CPU ms/fetch |"
    )
    title = (
        "one partition"
        if layout == "one"
        else f"spread round robin over {partitions} partitions of one topic"
    )
    return "\n".join(
        [f"### {title}", "", head, "|" + " ---: |" * 9, *(r.row(partitions) for r in ranges), ""]
    )


@contextmanager
def broker(args: argparse.Namespace) -> Iterator[tuple[str, int]]:
    """The bootstrap address and process id of the broker to measure."""
    if args.bootstrap:
        port = int(args.bootstrap.rsplit(":", 1)[1])
        yield args.bootstrap, args.broker_pid or listening_pid(port)
        return
    node = EmbeddedBroker() if args.broker == "embedded" else ApacheKafka(heap="1g")
    node.start()
    try:
        yield node.bootstrap, listening_pid(node.port)
    finally:
        node.stop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # past about 13,000 records in one partition the embedded broker stopped delivering
    parser.add_argument("--records", type=int, default=10_000, help="round trips per layout")
    parser.add_argument("--bucket", type=int, default=0, help="records per range (records/10)")
    parser.add_argument("--size", type=int, default=2048, help="bytes per record")
    parser.add_argument("--partitions", type=int, default=64, help="partitions for `spread`")
    parser.add_argument(
        "--layouts", nargs="+", choices=["one", "spread"], default=["one", "spread"]
    )
    parser.add_argument("--probe", type=int, default=200, help="requests per probe (0: none)")
    parser.add_argument("--warmup", type=int, default=200, help="round trips not counted")
    parser.add_argument("--broker", choices=["embedded", "kafka"], default="embedded")
    parser.add_argument("--bootstrap", help="an already running broker instead")
    parser.add_argument("--broker-pid", type=int, help="its process (default: by its port)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--give-up-s", type=float, default=10.0, help="wait for a record at most this long"
    )
    args = parser.parse_args(argv)
    args.bucket = args.bucket or max(1, args.records // 10)
    return args


async def main(args: argparse.Namespace) -> None:
    with broker(args) as (bootstrap, pid):
        kind = broker_kind(bootstrap)
        wait_ms = KAFKA_FETCH_WAIT_MS if kind == "kafka" else Settings().fetch_max_wait_ms
        print(f"{kind} broker at {bootstrap}, pid {pid}", file=sys.stderr, flush=True)
        out = [
            f"Command: `python -m benchmarks.broker_partition_growth {' '.join(sys.argv[1:])}`",
            f"Broker: {kind}; consumer fetch wait {wait_ms} ms; {args.size}-byte records; "
            f"{args.warmup} warm-up round trips; probes of {args.probe} requests.",
            "",
        ]
        for layout in args.layouts:
            ranges = await run_layout(bootstrap, pid, layout, args, wait_ms)
            out.append(table(layout, ranges, 1 if layout == "one" else args.partitions))
        print("\n".join(out))


if __name__ == "__main__":
    asyncio.run(main(parse()))
