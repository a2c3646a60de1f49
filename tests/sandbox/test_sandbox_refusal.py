"""Without working isolation the service refuses every run, says what is missing, and runs
nothing on the host. These need no bubblewrap: they take it away."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sandbox.sandbox_support import start_service

pytestmark = pytest.mark.integration

NO_NAMESPACES = "bwrap: No permissions to create a new namespace"


def _without_bwrap_on_path(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    prlimit = shutil.which("prlimit")
    if prlimit:
        (bin_dir / "prlimit").symlink_to(prlimit)
    return {"PATH": str(bin_dir)}


def _missing_binary(tmp_path: Path) -> dict[str, str]:
    return {"CHOREO_SANDBOX_BWRAP": str(tmp_path / "missing" / "bwrap")}


def _bwrap_without_namespaces(tmp_path: Path) -> dict[str, str]:
    """A bubblewrap that fails the way it does where user namespaces are disabled. It lives
    in the test's ``world`` directory, which the unprivileged sandbox uid may enter."""
    fake = tmp_path / "world" / "bwrap"
    fake.write_text(f"#!/bin/sh\necho '{NO_NAMESPACES}' >&2\nexit 1\n")
    fake.chmod(0o755)
    return {"CHOREO_SANDBOX_BWRAP": str(fake)}


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory whose ``world`` part any uid may use, as the unprivileged sandbox uid (or
    code wrongly run on the host) must be able to; pytest's ``tmp_path`` is private."""
    with tempfile.TemporaryDirectory(prefix="choreo-sandbox-") as name:
        path = Path(name)
        path.chmod(0o711)
        (path / "world").mkdir()
        (path / "world").chmod(0o777)
        yield path


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        (_without_bwrap_on_path, "bubblewrap not found"),
        (_missing_binary, "bubblewrap not found"),
        (_bwrap_without_namespaces, NO_NAMESPACES),
    ],
    ids=["no-bwrap-on-path", "bwrap-setting-missing", "no-namespaces"],
)
def test_refuses_every_run_without_isolation(
    scratch: Path, environment: Callable[[Path], dict[str, str]], named: str
) -> None:
    marker = scratch / "world" / "ran-on-the-host"
    service = start_service(socket=scratch / "api.sock", env=environment(scratch))
    try:
        health = service.get("/healthz")
        assert health.status_code == 503
        assert health.json()["isolation"] is False
        assert named in health.json()["problem"]
        for _ in range(2):  # checked again on each run, still refused
            result = service.run(f"open({str(marker)!r}, 'w').write('x')\nprint('ran')")
            assert result.status == "refused"
            assert named in (result.reason or "")
            assert (result.stdout, result.exit_code) == ("", None)
        assert not marker.exists()
    finally:
        service.stop()
