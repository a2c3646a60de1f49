"""Keeping a mesh's services up: a crashed service is restarted with back-off, and said so.

A service that exits on its own (a crash, an OOM kill, ``kill -9``) strands the traces whose
records it was handling until it is back: its consumer group hands them to it again when it
rejoins. So ``choreo up`` restarts it, waiting 1 s, then 2 s, 4 s… up to 30 s between
attempts, so a service that cannot start does not spin; one that stayed up for a minute starts
over at 1 s. Every exit and restart is reported as one line; an exit names the last error
its log holds (``ModuleNotFoundError: No module named 'handlers'``), not only its status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from choreo.local.processes import Child, ProcessGroup


@dataclass
class Supervisor:
    """Watches ``group``; ``check()`` restarts what is due and returns what happened."""

    group: ProcessGroup
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    #: A service up this long before it exits had recovered: its back-off starts over.
    stable_s: float = 60.0
    restarts: dict[str, int] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)

    def delay(self, name: str) -> float:
        """Seconds to wait before restart number ``restarts[name] + 1``."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** self.restarts.get(name, 0))

    def check(self, now: float | None = None) -> list[str]:
        """Schedule a restart for each newly exited service, restart those due; one line
        per event."""
        now = time.monotonic() if now is None else now
        events = []
        for child in self.group.children:
            if not child.status.startswith("exited"):
                continue
            if child.name not in self._due:
                events.append(self._schedule(child, now))
            elif now >= self._due[child.name]:
                del self._due[child.name]
                self.restarts[child.name] = self.restarts.get(child.name, 0) + 1
                self.group.respawn(child)
                events.append(
                    f"{child.name} restarted (pid {child.pid}, restart {self.restarts[child.name]})"
                )
        return events

    def _schedule(self, child: Child, now: float) -> str:
        uptime = now - child.started_at
        if uptime >= self.stable_s:
            self.restarts.pop(child.name, None)
        wait = self.delay(child.name)
        self._due[child.name] = now + wait
        error = child.last_error()
        return (
            f"{child.name} {child.status} after {uptime:.0f}s"
            + (f": {error}" if error else "")
            + f"; restarting in {wait:.0f}s (log: {child.log_path})"
        )
