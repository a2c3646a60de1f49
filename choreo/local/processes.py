"""A group of child processes started together and stopped together, cleanly.

Each service of a mesh runs as its own OS process, exactly as it would in its own container;
this group only starts them, reports their status and stops them (SIGTERM, then SIGKILL after
a grace period) so nothing is left behind. Each child also dies with the process that started
it, however that one ends (choreo.kafka.children): a ``choreo up`` or test run killed with
SIGKILL leaves no service running.
"""

from __future__ import annotations

import json
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

from choreo.kafka.children import popen
from choreo.schemas.errors import ChoreoError

#: ``choreo`` run by this interpreter; ``-P`` keeps the current folder off the import path, so an
#: application's own packages can never shadow ours.
CHOREO_CLI = (sys.executable, "-P", "-m", "choreo.cli.main")

#: The variable of a service's metrics port (choreo.observe.settings).
METRICS_PORT = "CHOREO_METRICS_PORT"

_ANNOUNCE = re.compile(r"listening on (http://\S+)")
#: How much of a log's end ``Child.last_error`` reads.
_TAIL_BYTES = 64 * 1024


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
    #: Where this run's output starts in the log (the log is appended to by every run).
    log_offset: int = 0

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

    def last_error(self) -> str | None:
        """The last error line of this run's log, at most 300 characters, or None.

        That is the last line that is not a JSON log event (Python's uncaught exception ends
        in ``ModuleNotFoundError: No module named 'x'``), or the message and reason of the
        last ``error`` or ``critical`` event after it; only the run's last 64 KB are read.
        """
        try:
            with self.log_path.open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(self.log_offset, size - _TAIL_BYTES))
                tail = log.read().decode(errors="replace")
        except OSError:
            return None
        for text in reversed(tail.splitlines()):
            if found := _error_of(text.strip()):
                return found[:300]
        return None


@dataclass
class ProcessGroup:
    """Children of one mesh; logs go to ``log_dir/<name>.log``.

    With ``metrics_base`` set (a fixed ``CHOREO_METRICS_PORT``), the n-th child started
    (from 0) serves its metrics on ``metrics_base + n``, kept across restarts: one port per
    service, never two services on one port.
    """

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)
    metrics_base: int | None = None

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
        own_env = dict(extra_env or {})
        if self.metrics_base:
            own_env.setdefault(METRICS_PORT, str(self.metrics_base + len(self.children)))
        child = Child(name, list(argv), self.log_dir / f"{name}.log", extra_env=own_env)
        self.respawn(child, stdout)
        self.children.append(child)
        return child

    def respawn(self, child: Child, stdout: IO[bytes] | None = None) -> None:
        """Start ``child``'s command (again), its output appended to its log (stdout to
        ``stdout`` if given)."""
        env = {**os.environ, **self.env, **child.extra_env}
        with child.log_path.open("ab") as log:
            child.log_offset = log.seek(0, os.SEEK_END)
            child.process = popen(
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
        return self.start(child.name, child.argv, child.extra_env)

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


def _error_of(text: str) -> str | None:
    """The error one log line reports: itself if it is plain text, the message (and reason)
    of a JSON event of level ``error`` or above, else None."""
    if not text:
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return text
    if not isinstance(event, dict):
        return text
    if event.get("level") not in ("error", "critical"):
        return None
    reason = event.get("reason")
    return f"{event.get('msg')}: {reason}" if reason else str(event.get("msg"))
