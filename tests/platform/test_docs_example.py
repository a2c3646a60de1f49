"""The complete small example of docs/AGENTS.md runs as printed: its two code blocks are
written to files, given a scripted model, and run on the real broker."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, RunningMesh

pytestmark = pytest.mark.integration

SCRIPT = {
    "model": "shop",
    "rules": [
        {
            "when": {"tool": "eligible"},
            "reply": "Sorry about the grinder: full refund, on its way.",
        },
        {
            "when": {"system": "answer the customer"},
            "tool_calls": [
                {
                    "name": "refund_eligibility",
                    "arguments": {"order_id": "1042", "reason": "damaged"},
                }
            ],
        },
    ],
}


def _blocks(language: str) -> list[str]:
    text = (REPO / "docs" / "AGENTS.md").read_text()
    example = text.split("## A complete small example", 1)[1]
    return re.findall(rf"```{language}\n(.*?)```", example, re.DOTALL)


def test_the_documented_example_runs(
    start_test_mesh: Callable[..., RunningMesh], tmp_path: Path
) -> None:
    (tmp_path / "shop.py").write_text(_blocks("python")[0])
    (tmp_path / "mesh.yaml").write_text(_blocks("yaml")[0])
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(SCRIPT))
    mesh = start_test_mesh(tmp_path / "mesh.yaml")
    trace_id = mesh.submit("order 1042 is broken")
    result = mesh.result(trace_id)
    assert result.status == "completed", result.reason
    assert result.output == "Sorry about the grinder: full refund, on its way."
    lookup, desk = mesh.hops(trace_id)
    assert (lookup.agent, lookup.status) == ("lookup", "ok")
    assert mesh.snapshot(trace_id).fields["order"]["item"] == "espresso grinder"
    assert [(c.name, c.status) for c in desk.tool_calls] == [("refund_eligibility", "ok")]
    missing = mesh.submit("order 7 please")
    assert mesh.result(missing).reason == "lookup ended the trace as failed: no order 7"
