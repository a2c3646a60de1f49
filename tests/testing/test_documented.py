"""The examples of docs/TESTING.md, "Testing your own mesh", run as printed: the pytest files
next to a copy of the support-desk example, and the async example as a script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from choreo.kafka.broker import BrokerHandle
from tests.conftest import EXAMPLES, REPO

pytestmark = pytest.mark.integration

SECTION = "## Testing your own mesh"


def blocks() -> list[str]:
    """The Python blocks of the section, in order."""
    text = (REPO / "docs" / "TESTING.md").read_text().split(SECTION, 1)[1]
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def run(command: list[str], cwd: Path, broker: BrokerHandle) -> subprocess.CompletedProcess[str]:
    """``command`` in ``cwd`` on the session's broker (so no second broker is started)."""
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_documented_pytest_files_pass_next_to_the_example(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    conftest, tests, *_ = blocks()
    folder = tmp_path / "support-desk"
    shutil.copytree(
        EXAMPLES / "support-desk",
        folder,
        ignore=shutil.ignore_patterns("tests", "*.db", "__pycache__"),
    )
    (folder / "tests").mkdir()
    (folder / "tests" / "conftest.py").write_text(conftest)
    (folder / "tests" / "test_desk.py").write_text(tests)
    done = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], folder, broker
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_the_documented_async_example_prints_its_result(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(blocks()[2])
    done = run([sys.executable, str(script)], REPO, broker)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "completed 6"
