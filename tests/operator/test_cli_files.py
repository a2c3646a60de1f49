"""Commands that write files write where they are told, or to the current folder: never into
the tracked docs or the installed package."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from choreo.kafka.broker import BrokerHandle
from tests.commands import CHOREO
from tests.conftest import REPO


def test_bench_prints_its_section_and_writes_only_the_file_asked_for(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    tracked = REPO / "docs" / "BENCHMARKS.md"
    before = tracked.read_text()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "CHOREO_TOPIC_PREFIX": f"bench{os.getpid()}",
    }
    command = [*CHOREO, "bench", "state", "--folds", "200", "--traces", "5"]
    printed = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert printed.returncode == 0, printed.stderr
    assert "choreo bench state --folds 200 --traces 5" in printed.stdout
    assert tracked.read_text() == before and list(tmp_path.iterdir()) == []

    out = tmp_path / "bench.md"
    written = subprocess.run(
        [*command, "--output", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert written.returncode == 0, written.stderr
    assert "## State" in out.read_text() and tracked.read_text() == before


def test_schema_export_writes_under_the_current_folder(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CHOREO, "schema", "export"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "schemas" / "json" / "Task.schema.json").is_file()
    check = subprocess.run(
        [*CHOREO, "schema", "export", "--check", "--out", str(tmp_path / "schemas" / "json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
