"""One leg of the raw relay baseline: consume a topic, produce each record to the next one.

The same client settings as a mesh agent and no mesh logic at all, so ``choreo bench hop`` can
show what the mesh adds on top of bare Kafka I/O through the same broker.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from choreo.kafka.clients import make_consumer, make_producer
from choreo.observe.settings import Settings


def leg_topic(prefix: str, index: int) -> str:
    return f"{prefix}.relay.{index}"


async def relay(bootstrap: str, prefix: str, leg: int, stop: asyncio.Event) -> None:
    settings = Settings()
    consumer = make_consumer(
        bootstrap,
        settings,
        group_id=f"{prefix}.relay.{leg}",
        client_id=f"relay-{leg}",
        topics=[leg_topic(prefix, leg)],
    )
    producer = make_producer(bootstrap, f"relay-{leg}")
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    await producer.send_and_wait(
                        leg_topic(prefix, leg + 1), record.value, key=record.key
                    )
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--leg", type=int, required=True)
    args = parser.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await relay(args.bootstrap, args.prefix, args.leg, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
