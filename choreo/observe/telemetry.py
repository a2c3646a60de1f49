"""OpenTelemetry for every service: one trace per task, carried across Kafka in headers.

``configure`` installs the SDK from the standard ``OTEL_*`` variables. Spans are exported over
OTLP/HTTP only when an endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``OTEL_TRACES_EXPORTER=otlp``; otherwise no SDK is
installed, spans are no-ops and an incoming ``traceparent`` passes through unchanged.

The trace context travels as W3C ``traceparent``/``tracestate`` Kafka headers: a consumer's
step span continues the producer's trace (``consume_span``) and every record produced inside
it carries the step's own context (``inject``), so the next service's span is its child.
Prompts and outputs are recorded only when ``CHOREO_TRACE_CONTENT=true``: they may hold
anything users submit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("choreo")

Headers = list[tuple[str, bytes]]
CONTENT_ENV = "CHOREO_TRACE_CONTENT"
_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_provider: TracerProvider | None = None
_record_content = False


def service_name(name: str) -> str:
    """The default ``service.name`` of a service run as ``name`` (``agent:writer`` ->
    ``choreo-agent-writer``); ``OTEL_SERVICE_NAME`` overrides it."""
    return "choreo-" + name.replace(":", "-")


def exporting(environ: Mapping[str, str]) -> bool:
    """Whether the ``OTEL_*`` settings in ``environ`` ask for spans to be exported."""
    exporters = {e.strip().lower() for e in environ.get("OTEL_TRACES_EXPORTER", "").split(",")}
    if "none" in exporters or environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    unsupported = exporters - {"", "otlp"}
    if unsupported:
        log.warning("unsupported trace exporters ignored", extra={"exporters": sorted(unsupported)})
    return "otlp" in exporters or any(environ.get(name) for name in _ENDPOINT_ENVS)


def configure(name: str) -> TracerProvider | None:
    """Set up tracing for this process from the environment; return the provider, if any.

    Call once per process, before any span starts (``run_service`` does). ``name`` is the
    default service name (see ``service_name``).
    """
    global _provider, _record_content
    _record_content = os.environ.get(CONTENT_ENV, "").lower() in ("1", "true", "yes")
    if _provider is not None or not exporting(os.environ):
        return _provider
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name(name)}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # OTEL_* configure both
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown() -> None:
    """Flush pending spans and stop exporting (on service stop)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def record_content() -> bool:
    """Whether prompts and outputs may be written to spans (``CHOREO_TRACE_CONTENT``)."""
    return _record_content


# -- Kafka headers ----------------------------------------------------------------------


class _HeaderSetter(Setter[Headers]):
    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier.append((key, value.encode("latin-1")))


class _HeaderGetter(Getter[Iterable[tuple[str, bytes]]]):
    def get(self, carrier: Iterable[tuple[str, bytes]], key: str) -> list[str] | None:
        values = [v.decode("latin-1") for k, v in carrier if k == key and v is not None]
        return values or None

    def keys(self, carrier: Iterable[tuple[str, bytes]]) -> list[str]:
        return [k for k, _ in carrier]


def inject(headers: Iterable[tuple[str, bytes]] = ()) -> Headers:
    """``headers`` with the current span's trace context in place of any they carried.

    With no active span the headers are returned unchanged, so a context passes through
    code that is not traced.
    """
    kept = list(headers)
    if not trace.get_current_span().get_span_context().is_valid:
        return kept
    fields = set(propagate.get_global_textmap().fields)
    carrier: Headers = [(k, v) for k, v in kept if k not in fields]
    propagate.inject(carrier, setter=_HeaderSetter())
    return carrier


def _pairs(headers: Any) -> list[tuple[str, bytes]]:
    """Header pairs from a list of tuples (aiokafka) or a mapping (some faust versions)."""
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers or ())


def extract(headers: Iterable[tuple[str, bytes]] | None) -> Context:
    """The trace context a record's producer injected (empty if none)."""
    return propagate.extract(list(headers or ()), getter=_HeaderGetter())


# -- spans ------------------------------------------------------------------------------


class Consumed(Protocol):
    """What a consume span reads of a record: aiokafka's records and faust's messages fit."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Any


@contextmanager
def consume_span(
    record: Consumed, *, group: str, agent: str | None = None, operation: str = "process"
) -> Iterator[trace.Span]:
    """A CONSUMER span for handling ``record``, continuing the trace of whoever produced it.

    Named ``{operation} {topic}`` with the messaging semantic conventions; records produced
    inside it should carry ``inject(...)`` headers so the next hop joins the same trace.
    """
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.consumer.group.name": group,
        "messaging.kafka.offset": record.offset,
    }
    if record.key is not None:
        key = record.key.decode("utf-8", "replace")
        attributes["messaging.kafka.message.key"] = key
        attributes["choreo.trace_id"] = key  # the trace id is the key on every topic
    if agent is not None:
        attributes["gen_ai.agent.name"] = agent
    with _tracer.start_as_current_span(
        f"{operation} {record.topic}",
        context=extract(_pairs(record.headers)),
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


@contextmanager
def produce_span(topic: str, key: str) -> Iterator[trace.Span]:
    """A PRODUCER span ``send {topic}`` for a record that starts (or continues) a trace."""
    with _tracer.start_as_current_span(
        f"send {topic}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": key,
            "choreo.trace_id": key,
        },
    ) as span:
        yield span


@contextmanager
def tool_span(tool: str) -> Iterator[trace.Span]:
    """An ``execute_tool {tool}`` span (GenAI semantic conventions) around one tool run."""
    with _tracer.start_as_current_span(
        f"execute_tool {tool}",
        kind=trace.SpanKind.INTERNAL,
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
        },
    ) as span:
        yield span
