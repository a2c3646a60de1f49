"""The sandbox as a tool the model calls with code, end to end on the real broker: the
model agent sends a program, the sandbox service runs it (bubblewrap) next to a file made
from the trace's state, the transcript goes back to the model, and its answer ends the
trace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import RunningMesh
from tests.sandbox.sandbox_support import requires_bwrap

pytestmark = [pytest.mark.integration, requires_bwrap]

ANALYST = "data analyst"
SUM = "print(sum(int(n) for n in open('task.txt').read().split()[1:]))"
SCRIPT = {
    "model": "analyst",
    "rules": [
        {
            "when": {"system": ANALYST, "tool": r"\[sandbox: ok, exit 0\]\n--- stdout\n10$"},
            "reply": "ANSWER: the numbers add up to 10",
        },
        {
            "when": {
                "system": ANALYST,
                "tool": r"(?s)\[sandbox: error, exit 1\].*ZeroDivisionError",
            },
            "reply": "ANSWER: the program divided by zero",
        },
        {"when": {"system": ANALYST, "tool": "."}, "reply": "unexpected transcript"},
        {
            "when": {"system": ANALYST, "user": "sum"},
            "tool_calls": [{"name": "sandbox", "arguments": {"code": SUM}}],
        },
        {
            "when": {"system": ANALYST, "user": "divide"},
            "tool_calls": [{"name": "sandbox", "arguments": {"code": "print(1 / 0)"}}],
        },
    ],
}


def sandbox_mesh(script: Path) -> dict[str, Any]:
    return {
        "name": "sandbox-tool",
        "entry": ["job"],
        "state": {"answer": {"reducer": "replace"}},
        "models": {"scripted": {"model": "analyst", "script": str(script)}},
        "agents": [
            {
                "name": "analyst",
                "subscribe": ["job"],
                "model": "scripted",
                "persona": f"You are the {ANALYST}.",
                "reads": ["input"],
                "tools": [{"name": "sandbox", "call": True, "files": {"task.txt": "input"}}],
                "writes": {"answer": "{output}"},
                "routes": [{"when": "^ANSWER", "finish": True, "output": "answer"}, {"fail": True}],
            }
        ],
    }


@pytest.fixture(scope="module")
def mesh(
    start_mesh: Callable[..., RunningMesh], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningMesh]:
    base = tmp_path_factory.mktemp("sandbox-tool")
    script = base / "model.yaml"
    script.write_text(yaml.safe_dump(SCRIPT))
    with start_mesh(sandbox_mesh(script), base_dir=base) as running:
        yield running


@pytest.mark.parametrize(
    ("task", "answer"),
    [
        ("sum 1 2 3 4", "ANSWER: the numbers add up to 10"),  # reads the file made from input
        ("divide", "ANSWER: the program divided by zero"),  # a failing program is a transcript
    ],
)
def test_the_model_runs_code_in_the_sandbox_and_answers_from_its_transcript(
    mesh: RunningMesh, task: str, answer: str
) -> None:
    trace_id = mesh.submit(task)
    result = mesh.result(trace_id, timeout=120)
    assert (result.status, result.output) == ("completed", answer), result.reason
    (hop,) = mesh.hops(trace_id)
    (call,) = hop.tool_calls
    assert (call.name, call.status, call.server) == ("sandbox", "ok", None)
    assert hop.usage.calls == 2  # the call for code, then the answer
    assert mesh.failed() == []
