"""Process plumbing every service shares: logging, tracing, signals, the metrics endpoint."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from choreo.kafka.transactions import Fenced
from choreo.observe import logs, metrics, telemetry
from choreo.observe.settings import Settings

log = logging.getLogger(__name__)


def run_service(
    name: str, settings: Settings, main: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    """Run ``main(stop)`` until it returns; SIGTERM and SIGINT set ``stop`` for a clean drain.

    Spans still buffered when ``main`` returns are flushed before the process exits. A
    process fenced by a newer owner of its input (choreo.kafka.transactions) exits with
    status 1 and one line saying so, for its supervisor to start it again.
    """
    logs.configure(settings, name)
    telemetry.configure(name)

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        with metrics.expose(settings.metrics_port, name):
            asyncio.run(_run())
    except Fenced as exc:
        log.error(
            "fenced by a newer owner of this input; exiting to be restarted",
            extra={"service": name, "reason": str(exc)},
        )
        raise SystemExit(1) from None
    finally:
        telemetry.shutdown()
