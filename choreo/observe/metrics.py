"""Prometheus metrics of every service: one registry, named by Prometheus conventions.

Labels are bounded (agent, model, topic, status, reason: all from the mesh spec or fixed
enums), never trace ids. ``expose`` serves ``/metrics`` on the port from the settings; the
``prime_*`` functions create the series whose labels are known at start at zero, so that
``increase()`` and ``rate()`` see the first event; ``ConsumerLag`` keeps the lag gauge current.

Every family is defined here, but a process exports only the series it made (``OWN``): an
agent shows no keeper counters at 0, so a scrape never mistakes one service for another. The
keeper's two series without labels are registered by ``prime_keeper``, for that reason.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from choreo.schemas.records import TerminalStatus

log = logging.getLogger(__name__)

#: A folder where each service announces its metrics address as a Prometheus file_sd target
#: file (``<service>-<pid>.json``), so a local Prometheus finds services on any port.
TARGETS_DIR_ENV = "CHOREO_METRICS_TARGETS_DIR"
STEP_STATUSES = ("ok", "failed", "refused")
FOLD_OUTCOMES = ("applied", "rejected", "duplicate", "after_finish")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

STEP_DURATION = Histogram(
    "choreo_step_duration_seconds",
    "Wall time of one agent step, model calls included.",
    ["agent"],
    buckets=_LATENCY_BUCKETS,
)
STEPS = Counter("choreo_steps_total", "Agent steps by outcome.", ["agent", "status"])
MODEL_CALL_DURATION = Histogram(
    "choreo_model_call_duration_seconds",
    "Latency of one model call, retries included.",
    ["agent", "model"],
    buckets=_LATENCY_BUCKETS,
)
MODEL_CALL_ERRORS = Counter(
    "choreo_model_call_errors_total",
    "Model calls that failed after all retries.",
    ["agent", "model", "reason"],
)
MODEL_RETRIES = Counter(
    "choreo_model_retries_total",
    "Model call attempts that were retried.",
    ["model", "status"],
)
MODEL_CIRCUIT_STATE = Gauge(
    "choreo_model_circuit_state",
    "Circuit breaker of a model tier in this process: 0 closed, 1 half-open, 2 open.",
    ["tier"],
)
AGENT_PAUSED = Gauge(
    "choreo_agent_paused",
    "1 while an agent takes no new records because a model tier it calls is down "
    "(on_outage: pause), else 0.",
    ["agent"],
)
TOKENS = Counter(
    "choreo_tokens_total", "Model tokens by direction.", ["agent", "model", "direction"]
)
COST = Counter("choreo_cost_usd_total", "Model cost in US dollars.", ["agent", "model"])
USAGE_ESTIMATED = Counter(
    "choreo_model_usage_estimated_total",
    "Model answers without usage, counted by the token estimate.",
    ["model"],
)
TOOL_RUNS = Counter("choreo_tool_runs_total", "Tool runs by status.", ["tool", "status"])
TOOL_CALLS = Counter(
    "choreo_tool_calls_total", "Tool calls a model asked for, by outcome.", ["tool", "status"]
)
VERDICTS = Counter(
    "choreo_verdicts_total", "Watchdog verdicts by action and reason.", ["action", "reason"]
)
CONFLICTS = Counter(
    "choreo_state_conflicts_total",
    "State write conflicts by field and policy.",
    ["field", "policy"],
)
DEAD_LETTERS = Counter(
    "choreo_dead_letters_total", "Records sent to the dead-letter topic.", ["consumer", "topic"]
)
TRACES_FINISHED = Counter("choreo_traces_finished_total", "Traces by terminal status.", ["status"])
TRACES_ADMITTED = Counter(
    "choreo_traces_admitted_total", "Tasks admitted as new traces.", registry=None
)
TRACES_IN_FLIGHT = Gauge(
    "choreo_traces_in_flight", "Traces admitted and not yet finished.", registry=None
)
FOLDS = Counter("choreo_state_folds_total", "Deltas folded into state, by outcome.", ["outcome"])
CONSUMER_LAG = Gauge(
    "choreo_consumer_lag_records", "Records behind the high watermark.", ["group", "topic"]
)


class _Made(Collector):
    """The families of ``REGISTRY`` this process has made series of (the others are another
    service's)."""

    def collect(self) -> Iterator[Metric]:
        return (family for family in REGISTRY.collect() if family.samples)


#: What a process exports: its own series, and the process and runtime collectors' ones.
OWN = CollectorRegistry(auto_describe=False)
OWN.register(_Made())


def serve(port: int | None) -> int | None:
    """Expose ``/metrics`` on ``port`` (0 picks a free one); return the bound port.

    A port that cannot be bound (taken, or privileged) is no reason to stop a service (its
    supervisor would start it again on the same port, for ever): the error is logged and a
    free port is served instead, announced like one asked for with 0 (see ``expose``).
    """
    if port is None:
        return None
    try:
        server, _thread = _start(port)
    except OSError as exc:
        if port == 0:  # no free port at all: nothing to fall back to
            raise
        server, _thread = _start(0)
        taken = "metrics port taken" if exc.errno == errno.EADDRINUSE else "metrics port refused"
        log.error(
            f"{taken}; serving on a free port instead",
            extra={"port": port, "served_port": server.server_port, "error": str(exc)},
        )
    bound: int = server.server_port
    return bound


def _start(port: int) -> tuple[Any, Any]:
    return start_http_server(port, addr="127.0.0.1" if port == 0 else "0.0.0.0", registry=OWN)


@contextmanager
def expose(port: int | None, service: str) -> Iterator[int | None]:
    """Serve ``/metrics`` on ``port`` (None: not at all) for the life of the block.

    With ``CHOREO_METRICS_TARGETS_DIR`` set, the bound address is also written there as a
    file_sd target (labelled ``service``) and removed on exit: how tests and local runs with
    ``CHOREO_METRICS_PORT=0`` tell Prometheus where each process listens.
    """
    bound = serve(port)
    target: Path | None = None
    if bound is not None:
        log.info("metrics served", extra={"port": bound})
        folder = os.environ.get(TARGETS_DIR_ENV)
        if folder:
            target = _announce(Path(folder), service, bound)
    try:
        yield bound
    finally:
        if target is not None:
            target.unlink(missing_ok=True)


def _announce(folder: Path, service: str, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{service.replace(':', '-')}-{os.getpid()}"
    entry = [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": service}}]
    staging = folder / f".{name}.tmp"  # Prometheus reads *.json: never a half-written file
    staging.write_text(json.dumps(entry))
    return staging.replace(folder / f"{name}.json")


# -- series known at start ----------------------------------------------------------------

#: The collectors ``prime_keeper`` has registered (once per process, however many keepers).
_registered: set[Collector] = set()


def prime_agent(agent: str, models: Iterable[str], topics: Iterable[str]) -> None:
    """Zero series for an agent: its steps, its models' calls and tokens, its dead letters."""
    STEP_DURATION.labels(agent=agent)
    AGENT_PAUSED.labels(agent=agent).set(0)
    for status in STEP_STATUSES:
        STEPS.labels(agent=agent, status=status)
    for model in models:
        MODEL_CALL_DURATION.labels(agent=agent, model=model)
        COST.labels(agent=agent, model=model)
        for direction in ("in", "out"):
            TOKENS.labels(agent=agent, model=model, direction=direction)
    for topic in topics:
        DEAD_LETTERS.labels(consumer=f"agent:{agent}", topic=topic)


def prime_keeper(topics: Iterable[str], conflict_fields: Iterable[tuple[str, str]]) -> None:
    """Zero series for the keeper: terminal statuses, fold outcomes, conflicts, dead letters,
    and its series without labels (admitted, in flight), which only the keeper exports."""
    for keepers_own in (TRACES_ADMITTED, TRACES_IN_FLIGHT):
        if keepers_own not in _registered:
            REGISTRY.register(keepers_own)
            _registered.add(keepers_own)
    for status in get_args(TerminalStatus):
        TRACES_FINISHED.labels(status=status)
    for outcome in FOLD_OUTCOMES:
        FOLDS.labels(outcome=outcome)
    for field, policy in conflict_fields:
        CONFLICTS.labels(field=field, policy=policy)
    for topic in topics:
        DEAD_LETTERS.labels(consumer="keeper", topic=topic)


# -- consumer lag -------------------------------------------------------------------------


class ConsumerLag:
    """``choreo_consumer_lag_records`` for one consumer: per topic, the sum over the
    partitions it owns of high watermark minus position.

    The high watermark comes from fetch responses (correct on every broker, unlike
    ``end_offsets``), so a partition shows up once a fetch has returned for it. ``update``
    is cheap to call on every loop turn: it measures at most once per ``every_s``.
    """

    def __init__(self, consumer: AIOKafkaConsumer, group: str, every_s: float = 1.0) -> None:
        self._consumer = consumer
        self._group = group
        self._every_s = every_s
        self._due = 0.0
        self._reported: set[str] = set()

    async def update(self) -> None:
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self._every_s
        lag: dict[str, int] = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                continue
            try:
                position = await self._consumer.position(tp)
            except IllegalStateError:  # revoked by a rebalance meanwhile
                continue
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - position)
        for topic in self._reported - set(lag):  # partitions moved away: nothing owed here
            CONSUMER_LAG.labels(group=self._group, topic=topic).set(0)
        for topic, records in lag.items():
            CONSUMER_LAG.labels(group=self._group, topic=topic).set(records)
        self._reported |= set(lag)
