"""Running the real ``choreo`` against a mesh started by the tests."""

from __future__ import annotations

import os
import re
import subprocess

from tests.commands import CHOREO
from tests.conftest import REPO, RunningMesh


def choreo(*args: str, mesh: RunningMesh | None = None, timeout: float = 180,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``choreo ARGS`` in a subprocess, against ``mesh``'s broker and topic prefix."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_BOOTSTRAP_SERVERS",
                         "CHOREO_TOPIC_PREFIX")}
    if mesh is not None:
        base.update(KAFKA_BOOTSTRAP_SERVERS=mesh.bootstrap,
                    CHOREO_TOPIC_PREFIX=mesh.settings.topic_prefix)
    return subprocess.run([*CHOREO, *args], cwd=REPO, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def submitted_id(stdout: str) -> str:
    """The trace id ``choreo submit`` printed."""
    found = re.search(r"submitted trace (\S+)", stdout)
    assert found, stdout
    return found.group(1)


def words(text: str) -> str:
    """The message with any line wrapping undone."""
    return " ".join(text.split())
