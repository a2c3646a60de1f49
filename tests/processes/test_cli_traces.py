"""The trace commands, run as the real ``choreo`` (a process of its own) against a running
mesh: what they print is the truth about this trace, verbatim, as text or as JSON."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from choreo.schemas import Envelope, decode
from tests.conftest import EXAMPLES, RunningMesh, wait_until
from tests.operator.support import choreo, submitted_id, words

#: Task input with the pieces of markup that once crashed the viewer or vanished from it.
MARKUP = "Write about [/b] closing tags, [audit] logs and [bold red]colour[/]"


@pytest.fixture(scope="module")
def mesh(start_mesh: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh(EXAMPLES / "writer-editor" / "mesh.yaml") as running:
        yield running


@pytest.fixture(scope="module")
def finished(mesh: RunningMesh) -> str:
    """A completed trace whose input looks like markup."""
    done = choreo("submit", str(mesh.path), MARKUP, "--wait", mesh=mesh)
    assert done.returncode == 0, done.stderr
    assert "status  completed" in done.stdout
    return submitted_id(done.stdout)


def test_state_shows_markup_in_input_verbatim(mesh: RunningMesh, finished: str) -> None:
    table = choreo("state", finished, "--full", mesh=mesh)
    assert table.returncode == 0, table.stderr
    assert MARKUP in table.stdout
    field = choreo("state", finished, "--field", "input", mesh=mesh)
    assert field.stdout == MARKUP + "\n"
    as_json = json.loads(choreo("state", finished, "--json", mesh=mesh).stdout)
    assert as_json["fields"]["input"] == MARKUP and as_json["trace_id"] == finished


def test_state_credits_every_writer_of_a_field(mesh: RunningMesh, finished: str) -> None:
    rows = {
        line.split("\t")[0]: line.split("\t")
        for line in choreo("state", finished, mesh=mesh).stdout.splitlines()
    }
    assert rows["history"][3] == "writer, editor"  # appended to by both agents
    assert rows["draft"][3] == "writer"


def test_read_commands_print_json(mesh: RunningMesh, finished: str) -> None:
    trace = json.loads(choreo("trace", finished, "--json", mesh=mesh).stdout)
    assert trace["status"] == "completed" and trace["hops"]
    assert trace["result"]["trace_id"] == finished
    result = json.loads(choreo("result", finished, "--json", mesh=mesh).stdout)
    assert result["status"] == "completed" and result["output"]
    budget = json.loads(choreo("budget", finished, "--json", mesh=mesh).stdout)
    assert budget["budget"]["max_hops"] == 12
    assert budget["used"]["hops"] == len(trace["hops"])
    escalations = json.loads(choreo("escalations", "--json", mesh=mesh).stdout)
    assert escalations == []


def test_budget_shows_what_is_left(mesh: RunningMesh, finished: str) -> None:
    shown = choreo("budget", finished, mesh=mesh)
    steps = next(line for line in shown.stdout.splitlines() if line.startswith("steps\t"))
    _, limit, used, left = steps.split("\t")
    assert int(limit) == 12 and int(limit) - int(used) == int(left)


def test_a_markup_id_is_reported_missing_not_a_crash(mesh: RunningMesh) -> None:
    for command in ("trace", "state", "result", "budget"):
        done = choreo(command, "[/x]", mesh=mesh)
        assert done.returncode == 1, (command, done.stderr)
        assert "Traceback" not in done.stderr and "'[/x]'" in done.stderr


def test_a_reused_trace_id_reports_its_refusal_not_the_old_result(
    mesh: RunningMesh, finished: str
) -> None:
    again = choreo(
        "submit", str(mesh.path), "a different task", "--trace-id", finished, "--wait", mesh=mesh
    )
    assert again.returncode == 1
    assert "status" not in again.stdout  # no result panel: the old result is not ours
    message = words(again.stderr)
    assert "not admitted" in message and "was already admitted" in message

    letters = json.loads(choreo("dlq", "--trace", finished, "--json", mesh=mesh).stdout)
    assert len(letters) == 1 and "already admitted" in letters[0]["reason"]
    shown = json.loads(choreo("dlq", "show", letters[0]["id"], "--json", mesh=mesh).stdout)
    refused = decode(base64.b64decode(shown["original"]), Envelope)
    assert refused.payload["task"]["input"] == "a different task"
    listed = choreo("dlq", mesh=mesh)
    assert letters[0]["id"] in listed.stdout and "already admitted" in listed.stdout


def test_submit_to_a_mesh_that_does_not_run_here_is_refused(mesh: RunningMesh) -> None:
    other = EXAMPLES / "triage" / "mesh.yaml"
    done = choreo("submit", str(other), "hello", mesh=mesh)
    assert done.returncode == 1
    message = words(done.stderr)
    assert "mesh 'triage' is not running under topic prefix" in message
    again = choreo("submit", str(other), "hello", mesh=mesh)  # and no topic was made for it
    assert again.returncode == 1


def test_result_of_a_running_trace_says_running(
    start_test_mesh: Callable[..., RunningMesh], tmp_path: Path
) -> None:
    # a model that answers long after the test: the trace stays running, however slow the
    # machine is
    (tmp_path / "slow.yaml").write_text(
        "model: slow\nlatency_ms: 900000\nrules:\n  - reply: done\n"
    )
    running = start_test_mesh(
        {
            "name": "slow",
            "entry": ["work.requested"],
            "models": {
                "slow": {"model": "slow", "script": str(tmp_path / "slow.yaml"), "timeout_s": 1800}
            },
            "state": {"answer": {}},
            "agents": [
                {
                    "name": "worker",
                    "subscribe": ["work.requested"],
                    "persona": "Work.",
                    "model": "slow",
                    "writes": {"answer": "{output}"},
                    "routes": [{"finish": True, "output": "answer"}],
                }
            ],
        },
        base_dir=tmp_path,
        settings={"shutdown_grace_s": 1},  # the step never ends: stop without waiting for it
    )
    trace_id = submitted_id(choreo("submit", str(running.path), "x", mesh=running).stdout)
    wait_until(lambda: _admitted(running, trace_id), 60, message="admission")
    done = choreo("result", trace_id, mesh=running)
    assert done.returncode == 3, done.stderr
    assert "running" in done.stdout and "no terminal record yet" in done.stdout
    as_json = choreo("result", trace_id, "--json", mesh=running)
    assert as_json.returncode == 3 and json.loads(as_json.stdout)["status"] == "running"


def _admitted(mesh: RunningMesh, trace_id: str) -> bool:
    try:
        mesh.snapshot(trace_id)
    except LookupError:
        return False
    return True
