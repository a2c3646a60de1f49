"""Running the real ``choreo`` against a mesh started by the tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.commands import CHOREO
from tests.conftest import REPO, RunningMesh, wait_until


def choreo(
    *args: str,
    mesh: RunningMesh | None = None,
    timeout: float = 180,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> subprocess.CompletedProcess[str]:
    """``choreo ARGS`` in a subprocess in ``cwd``, against ``mesh``'s broker and topic prefix
    (with no mesh, no broker address: only what ``env`` adds)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_BOOTSTRAP_SERVERS", "CHOREO_TOPIC_PREFIX")
    }
    if mesh is not None:
        base.update(
            KAFKA_BOOTSTRAP_SERVERS=mesh.bootstrap, CHOREO_TOPIC_PREFIX=mesh.settings.topic_prefix
        )
    return subprocess.run(
        [*CHOREO, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def submitted_id(stdout: str) -> str:
    """The trace id ``choreo submit`` printed."""
    found = re.search(r"submitted trace (\S+)", stdout)
    assert found, stdout
    return found.group(1)


def words(text: str) -> str:
    """The message with any line wrapping undone."""
    return " ".join(text.split())


@dataclass
class Up:
    """A ``choreo up`` running from ``folder``, its output in ``log``."""

    folder: Path
    log: Path
    prefix: str

    def choreo(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """``choreo ARGS`` run from the folder, with its topic prefix and no broker address:
        the broker is the one ``choreo up`` announces there."""
        return choreo(
            *args,
            env={"CHOREO_TOPIC_PREFIX": self.prefix, **(env or {})},
            cwd=self.folder,
            timeout=timeout,
        )


@contextmanager
def choreo_up(
    mesh: Path,
    folder: Path,
    bootstrap: str,
    prefix: str,
    *args: str,
    env: dict[str, str] | None = None,
) -> Iterator[Up]:
    """``choreo up MESH ARGS`` from ``folder`` on the test broker until the block ends; it
    must then stop cleanly."""
    log = folder / "up.log"
    full = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "CHOREO_TOPIC_PREFIX": prefix,
        "CHOREO_SESSION_TIMEOUT_MS": "6000",
        **(env or {}),
    }
    with log.open("w") as out:
        up = subprocess.Popen(
            [*CHOREO, "up", str(mesh), *args],
            cwd=folder,
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: "mesh up" in log.read_text() or up.poll() is not None,
            120,
            message="the mesh to start",
        )
        assert up.poll() is None, log.read_text()
        yield Up(folder, log, prefix)
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=90)
    assert up.returncode == 0, log.read_text()
