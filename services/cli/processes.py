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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: ``choreo`` run by this interpreter; ``-P`` keeps the current folder off the import path, so an
#: application's own packages can never shadow ours.
CHOREO_CLI = (sys.executable, "-P", "-m", "choreo.services.cli.main")

_ANNOUNCE = re.compile(r"listening on (http://\S+)")


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

    def start(self, name: str, argv: Sequence[str],
              extra_env: Mapping[str, str] | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Child(name, list(argv), self.log_dir / f"{name}.log",
                      extra_env=dict(extra_env or {}))
        self.respawn(child)
        self.children.append(child)
        return child

    def respawn(self, child: Child) -> None:
        """Start ``child``'s command (again), its output appended to its log."""
        env = {**os.environ, **self.env, **child.extra_env}
        with child.log_path.open("ab") as log:
            child.process = subprocess.Popen(
                child.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True)
        child.started_at = time.monotonic()

    def start_choreo(self, name: str, args: Sequence[str],
                     extra_env: Mapping[str, str] | None = None) -> Child:
        """Start ``choreo ARGS`` with this interpreter, whatever PATH says."""
        return self.start(name, [*CHOREO_CLI, *args], extra_env)

    def announced_url(self, child: Child, timeout: float) -> str:
        """The ``listening on http://...`` URL a server child prints once it has bound.

        Servers bind port 0 and announce what they got, so no port is chosen here and then
        taken by someone else before the child binds it.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _ANNOUNCE.search(child.log_path.read_text(errors="replace"))
            if found:
                return found.group(1)
            if child.process is None or child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited before listening; see {child.log_path}")
            time.sleep(0.05)
        raise RuntimeError(f"{child.name} did not announce its address within {timeout:.0f}s")

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
