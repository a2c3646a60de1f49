"""Trace context in Kafka headers, and when spans are exported: no broker needed."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from choreo.observe import telemetry

UPSTREAM = ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
_tracer = TracerProvider().get_tracer("test")  # a local SDK tracer: the global one is untouched


def test_outside_any_span_headers_pass_through_unchanged() -> None:
    headers = [("x-origin", b"billing"), UPSTREAM]
    assert telemetry.inject(headers) == headers


def test_inside_a_span_the_span_replaces_the_upstream_context_and_other_headers_stay() -> None:
    parent = telemetry.extract([("x-origin", b"billing"), UPSTREAM])
    with _tracer.start_as_current_span("step", context=parent) as span:
        headers = telemetry.inject([("x-origin", b"billing"), UPSTREAM])
    assert ("x-origin", b"billing") in headers
    assert [k for k, _ in headers].count("traceparent") == 1
    carried = trace.get_current_span(telemetry.extract(headers)).get_span_context()
    ours = span.get_span_context()
    assert carried.trace_id == ours.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert carried.span_id == ours.span_id != 0xB7AD6B7169203331


def test_a_record_without_trace_headers_starts_a_new_trace() -> None:
    context = telemetry.extract(None)
    assert not trace.get_current_span(context).get_span_context().is_valid


@pytest.mark.parametrize(
    ("environ", "exported"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_TRACES_EXPORTER": "none",
            },
            False,
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"},
            False,
        ),
    ],
)
def test_spans_are_exported_only_when_an_otlp_destination_is_configured(
    environ: dict[str, str], exported: bool
) -> None:
    assert telemetry.exporting(environ) is exported
