"""The ``choreo`` command, a process of its own, reads a running mesh: the state at each
version, and the tree of a trace's steps."""

from __future__ import annotations

import subprocess

import pytest

from tests.commands import CHOREO
from tests.conftest import RunningMesh

pytestmark = pytest.mark.integration


def test_state_at_each_version_through_the_cli(writer_editor: RunningMesh) -> None:
    trace_id = writer_editor.submit("time travel")
    result = writer_editor.result(trace_id)
    final = result.state_version
    assert final == 7  # admission + six steps
    outputs = []
    for version in (1, 2, final):
        out = subprocess.run(
            [*CHOREO, "state", trace_id, "--at", str(version), "--mesh", str(writer_editor.path)],
            env={**writer_editor.env(), "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert f"at version {version}" in out.stdout
        outputs.append(out.stdout)
    fields = [line.split("\t")[0] for line in outputs[0].splitlines()]
    assert "input" in fields and "draft" not in fields  # version 1: the task only, no draft
    assert "why they matter" in outputs[1]  # the first draft
    assert "APPROVED" in outputs[2]
    beyond = subprocess.run(
        [*CHOREO, "state", trace_id, "--at", str(final + 1), "--mesh", str(writer_editor.path)],
        env=writer_editor.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert beyond.returncode == 2
    assert f"versions 1..{final}" in beyond.stderr


def test_trace_command_prints_the_tree_of_steps(writer_editor: RunningMesh) -> None:
    trace_id = writer_editor.submit("show me the tree")
    writer_editor.result(trace_id)
    out = subprocess.run(
        [*CHOREO, "trace", trace_id],
        env={**writer_editor.env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = out.stdout.splitlines()
    assert trace_id in lines[0] and "completed" in lines[0]
    agents = [name for line in lines[1:] for name in ("writer", "editor") if f"{name}  hop" in line]
    assert agents == ["writer", "editor"] * 3
