"""The sandbox service as a real process, and what the tests look at on the host."""

from __future__ import annotations

import asyncio
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from choreo.sandbox import SandboxResult, run_code
from tests.conftest import REPO

START_TIMEOUT_S = 60.0

requires_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed (apt-get install bubblewrap); the sandbox cannot run",
)


@dataclass
class Service:
    """One running ``python -m choreo.sandbox`` process."""

    process: subprocess.Popen[str]
    socket: Path | None
    url: str | None

    def run(self, code: str, **options: Any) -> SandboxResult:
        target = {"base_url": self.url} if self.url else {"socket_path": self.socket}
        return asyncio.run(run_code(code, **target, **options))

    def get(self, path: str) -> httpx.Response:
        if self.url:
            return httpx.get(self.url + path, timeout=30)
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, base_url="http://sandbox") as client:
            return client.get(path, timeout=30)

    def stop(self) -> str:
        """SIGTERM, wait, and return what the service wrote to stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            _out, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _out, err = self.process.communicate()
        return err


def start_service(
    *, socket: Path | None = None, port: int | None = None, env: dict[str, str] | None = None
) -> Service:
    """Start the service and wait for its ``listening on`` line."""
    args = [sys.executable, "-m", "choreo.sandbox"]
    if socket is not None:
        args += ["--socket", str(socket)]
    if port is not None:
        args += ["--port", str(port)]
    process = subprocess.Popen(
        args,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(START_TIMEOUT_S)
    line = process.stdout.readline().strip() if ready else ""
    if not line.startswith("listening on "):
        process.kill()
        raise AssertionError(f"service did not start: {line!r} {process.communicate()[1]!r}")
    address = line.removeprefix("listening on ")
    if address.startswith("unix:"):
        return Service(process, Path(address.removeprefix("unix:")), None)
    return Service(process, None, address)


#: As root, each xdist worker's sandbox services run code as their own host uid, 61000 + the
#: worker's number: the processes a test counts, and the RLIMIT_NPROC its runs share, are then
#: its own, whatever other test files run sandboxes at the same time (they keep 65534).
WORKER_UID_BASE = 61000


def sandbox_host_uid() -> int:
    """The host uid this test process's sandbox services run code as (see ``WORKER_UID_BASE``);
    not root, runs keep the tests' own uid."""
    if os.geteuid() != 0:
        return os.getuid()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return WORKER_UID_BASE + int(worker)


def sandbox_processes() -> list[int]:
    """Pids of this test process's sandbox runs, wherever they might have escaped to.

    As root, every process of the worker's sandbox uid: the run's reaper and bubblewrap as
    well as the processes inside. Otherwise the tests' own uid's processes in a deeper pid
    namespace than the tests (the runs of every worker)."""
    uid = str(sandbox_host_uid())
    own_depth = 0 if os.geteuid() == 0 else len(_status_fields(Path("/proc/self/status"))["NSpid"])
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _status_fields(entry / "status")
        except OSError:  # exited while we looked
            continue
        if fields["Uid"][0] == uid and len(fields["NSpid"]) > own_depth:
            found.append(int(entry.name))
    return sorted(found)


def process_state(pid: int) -> str | None:
    """``pid``'s state letter from ``/proc/PID/stat`` (R, S, T, Z, ...), or None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def processes_of(uid: int) -> int:
    """How many tasks (threads count against RLIMIT_NPROC) the host has for ``uid``."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += len(list((entry / "task").iterdir()))
        except OSError:
            continue
    return count


def _status_fields(path: Path) -> dict[str, list[str]]:
    fields = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()
    return fields


def wait_until_no_sandbox_processes(timeout: float = 20.0) -> None:
    """Poll until no run's process is left on the host."""
    deadline = time.monotonic() + timeout
    while (left := sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"sandbox processes left on the host: {left}"
