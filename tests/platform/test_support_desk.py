"""The support-desk example end to end: router, Python agent on SQLite, a model agent that
calls Python tools and a stdio MCP server concurrently, and a reviewer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.commands import CHOREO
from tests.conftest import RunningMesh, wait_until
from tests.platform.conftest import scrape
from tests.telemetry.otlp import OtlpReceiver

pytestmark = pytest.mark.integration

BROKEN = "My order 1042 arrived broken, can I get a refund?"


def test_a_refund_request_flows_through_python_code_tools_and_mcp(
    support_desk: RunningMesh,
) -> None:
    trace_id = support_desk.submit(BROKEN)
    result = support_desk.result(trace_id)
    assert result.status == "completed", result.reason
    assert "full refund of 189.00 EUR" in result.output
    hops = support_desk.hops(trace_id)
    assert [h.agent for h in hops] == ["triage", "lookup", "desk", "reviewer"]
    assert all(h.status == "ok" for h in hops)
    # The Python agent's writes are folded into the state every later step reads.
    snapshot = support_desk.snapshot(trace_id)
    assert snapshot.fields["order"]["item"] == "espresso grinder"
    assert snapshot.writes["order"].agent == "lookup"
    # Both calls of the desk's first turn ran, one in-process and one on the MCP server.
    desk = hops[2]
    calls = {c.name: c for c in desk.tool_calls}
    assert set(calls) == {"refund_eligibility", "kb_search"}
    assert all(c.status == "ok" and c.result_chars > 0 for c in calls.values())
    assert calls["kb_search"].server == "mcp:kb" and calls["refund_eligibility"].server is None
    assert all(c.arguments is None for c in calls.values())  # no content recording asked for
    assert desk.usage.calls == 2  # the model was asked twice: tool calls, then the answer
    assert len(support_desk.results(trace_id)) == 1


def test_tool_calls_are_spans_metrics_and_lines_of_choreo_trace(
    support_desk: RunningMesh, receiver: OtlpReceiver, metrics_targets: Path
) -> None:
    trace_id = support_desk.submit(BROKEN)
    assert support_desk.result(trace_id).status == "completed"
    spans = wait_until(
        lambda: (
            [
                s
                for s in receiver.spans()
                if s.name.startswith("execute_tool") and s.service == "choreo-agent-desk"
            ]
            or None
        ),
        30,
        message="execute_tool spans",
    )
    names = {s.attributes["gen_ai.tool.name"] for s in spans}
    assert {"refund_eligibility", "kb_search"} <= names
    kb = next(s for s in spans if s.attributes["gen_ai.tool.name"] == "kb_search")
    assert kb.attributes["choreo.tool.server"] == "mcp:kb"
    assert kb.attributes["choreo.tool.status"] == "ok"
    text = scrape(metrics_targets, "agent:desk")
    assert 'choreo_tool_calls_total{status="ok",tool="kb_search"}' in text
    shown = subprocess.run(
        [*CHOREO, "trace", trace_id],
        env=support_desk.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "tool kb_search @mcp:kb" in shown.stdout
    assert "tool refund_eligibility" in shown.stdout


def test_an_unknown_order_still_gets_an_answer(support_desk: RunningMesh) -> None:
    trace_id = support_desk.submit("Where is order 9999?")
    result = support_desk.result(trace_id)
    assert result.status == "completed", result.reason
    assert support_desk.snapshot(trace_id).fields["notes"] == "no order 9999 on file"
