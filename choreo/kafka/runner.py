"""The one process runner: what makes any service a process of its own.

A service (choreo.kafka.service.Service) is an async context manager that starts its
resources on enter and stops them on exit, and whose ``run(stop)`` serves until ``stop`` is
set: the keeper, the agents, the watchdog, the sandbox and the model server. Everything
that belongs to a process, and to nothing a service could share an event loop with, is here:
the log set-up (choreo.observe.logs), tracing (choreo.observe.telemetry), the metrics
endpoint, SIGTERM and SIGINT turned into ``stop`` for a clean drain, and the exit status.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from choreo.kafka.errors import BrokerRefused
from choreo.kafka.security import NOT_ALLOWED, not_allowed, security_of
from choreo.kafka.service import Service
from choreo.kafka.transactions import Fenced
from choreo.observe import logs, metrics, telemetry
from choreo.observe.settings import Settings

log = logging.getLogger(__name__)

#: What makes a service exit with one line rather than a traceback: the broker refused it.
REFUSED: tuple[type[BaseException], ...] = (BrokerRefused, *NOT_ALLOWED)


#: Builds a service inside the running event loop (aiokafka's clients bind to it).
ServiceFactory = Callable[[], Service]


def run_service(name: str, settings: Settings, service: ServiceFactory) -> None:
    """Run ``service`` as this process until SIGTERM or SIGINT, then drain and stop it.

    ``name`` names the process in its logs, spans and metrics target (``agent:writer``).
    Spans still buffered at the end are flushed before the process exits. A process fenced
    by a newer owner of its input (choreo.kafka.transactions) exits with status 1 and one
    line saying so, for its supervisor to start it again, and so does one the broker refuses
    (credentials, certificate, a missing ACL: choreo.kafka.security); any other error leaves as
    Python's own (a traceback, status 1), after the service has stopped what it started.
    """
    logs.configure(settings, name)
    telemetry.configure(name)

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with service() as running:
            await running.run(stop)

    try:
        with metrics.expose(settings.metrics_port, name):
            asyncio.run(_run())
    except Fenced as exc:
        log.error(
            "fenced by a newer owner of this input; exiting to be restarted",
            extra={"service": name, "reason": str(exc)},
        )
        raise SystemExit(1) from None
    except REFUSED as exc:
        refused = not_allowed(exc, security_of(settings), name) or exc
        log.error(
            "the broker refused this service; exiting",
            extra={"service": name, "reason": str(refused)},
        )
        raise SystemExit(1) from None
    finally:
        telemetry.shutdown()
