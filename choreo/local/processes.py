"""A group of child processes started together and stopped together, cleanly.

Each service of a mesh runs as its own OS process, exactly as it would in its own container;
this group only starts them, reports their status and stops them (SIGTERM, then SIGKILL after
a grace period) so nothing is left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from choreo.schemas.errors import ChoreoError

#: ``choreo`` run by this interpreter; ``-P`` keeps the current folder off the import path, so an
#: application's own packages can never shadow ours.
CHOREO_CLI = (sys.executable, "-P", "-m", "choreo.cli.main")

_ANNOUNCE = re.compile(r"listening on (http://\S+)")


class ServiceStartError(ChoreoError, RuntimeError):
    """A server child exited or stayed silent before announcing its address; the message
    names its log."""


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def status(self) -> str:
        if self.process is None:
            return "not started"
        code = self.process.poll()
        if code is None:
            return "running"
        return "stopped" if code in (0, -signal.SIGTERM) else f"exited ({code})"


@dataclass
class ProcessGroup:
    """Children of one mesh; logs go to ``log_dir/<name>.log``."""

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        extra_env: Mapping[str, str] | None = None,
        *,
        stdout: IO[bytes] | None = None,
    ) -> Child:
        """Start ``argv``; its output is appended to its log (stdout to ``stdout`` if given)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Child(
            name, list(argv), self.log_dir / f"{name}.log", extra_env=dict(extra_env or {})
        )
        self.respawn(child, stdout)
        self.children.append(child)
        return child

    def respawn(self, child: Child, stdout: IO[bytes] | None = None) -> None:
        """Start ``child``'s command (again), its output appended to its log (stdout to
        ``stdout`` if given)."""
        env = {**os.environ, **self.env, **child.extra_env}
        with child.log_path.open("ab") as log:
            child.process = subprocess.Popen(
                child.argv,
                stdout=stdout or log,
                stderr=log if stdout else subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        child.started_at = time.monotonic()

    def start_choreo(
        self, name: str, args: Sequence[str], extra_env: Mapping[str, str] | None = None
    ) -> Child:
        """Start ``choreo ARGS`` with this interpreter, whatever PATH says."""
        return self.start(name, [*CHOREO_CLI, *args], extra_env)

    def start_server(
        self,
        name: str,
        args: Sequence[str],
        timeout: float,
        extra_env: Mapping[str, str] | None = None,
    ) -> tuple[Child, str]:
        """Start a server ``choreo ARGS`` and return it with the URL it announces.

        Servers bind port 0 and print ``listening on URL`` on stdout once bound, so no port
        is chosen here and then taken by someone else first. The child's stdout is a file
        of this start alone (unnamed, gone when both ends close it): the URL read is this
        run's, never an older run's line in a log that several runs append to. The line is
        then copied to the log for people to read.
        """
        with tempfile.TemporaryFile() as announcements:
            child = self.start(name, [*CHOREO_CLI, *args], extra_env, stdout=announcements)
            url = _announced_url(child, announcements, timeout)
        with child.log_path.open("a") as log:
            log.write(f"listening on {url}\n")
        # a restart must come back where its clients already point: the port it bound
        port = urlsplit(url).port
        if "--port" in child.argv and port is not None:
            child.argv[child.argv.index("--port") + 1] = str(port)
        return child, url

    def restart(self, child: Child) -> Child:
        """Start ``child``'s command again under its name (after it exited or was killed);
        the new process takes its place in the group."""
        self.children.remove(child)
        return self.start(child.name, child.argv)

    def find(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(name)

    def failed(self) -> list[Child]:
        return [c for c in self.children if c.status.startswith("exited")]

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every child (newest first), wait up to ``grace``, SIGKILL the rest."""
        for child in reversed(self.children):
            if child.process and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _announced_url(child: Child, announcements: IO[bytes], timeout: float) -> str:
    """The first ``listening on http://...`` URL in ``announcements``, waiting up to
    ``timeout`` seconds; raises ServiceStartError if the child exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = os.pread(announcements.fileno(), 64 * 1024, 0).decode(errors="replace")
        if found := _ANNOUNCE.search(text):
            return found.group(1)
        if child.process is None or child.process.poll() is not None:
            raise ServiceStartError(f"{child.name} exited before listening; see {child.log_path}")
        time.sleep(0.05)  # polling a file the child writes once, with a deadline
    raise ServiceStartError(
        f"{child.name} did not announce its address within {timeout:.0f}s; see {child.log_path}"
    )
