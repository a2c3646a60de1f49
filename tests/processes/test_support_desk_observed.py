"""The support-desk example as processes: a tool call of the desk is a span its process
exports, a sample of its process's metrics endpoint and a line of ``choreo trace``. (The
mesh's behaviour: examples/support-desk/tests/, through choreo.testing.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.commands import CHOREO
from tests.conftest import ProcessMesh, wait_until
from tests.processes.conftest import scrape
from tests.telemetry.otlp import OtlpReceiver, Span

pytestmark = pytest.mark.integration

BROKEN = "My order 1042 arrived broken, can I get a refund?"


def test_tool_calls_are_spans_metrics_and_lines_of_choreo_trace(
    support_desk: ProcessMesh, receiver: OtlpReceiver, metrics_targets: Path
) -> None:
    trace_id = support_desk.submit(BROKEN)
    assert support_desk.result(trace_id).status == "completed"
    called = {"refund_eligibility", "kb_search"}

    def tool_spans() -> list[Span] | None:
        spans = [
            s
            for s in receiver.spans()
            if s.name.startswith("execute_tool") and s.service == "choreo-agent-desk"
        ]
        # the process exports its spans in batches: one call's may come a batch later
        return spans if called <= {s.attributes["gen_ai.tool.name"] for s in spans} else None

    spans = wait_until(tool_spans, 30, message="execute_tool spans of both tools")
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
