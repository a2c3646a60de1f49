"""Records whose step ended the agent process: found on their next delivery, not run again
forever.

Some user code ends the whole process, past any ``except``: ``os._exit``, a segfault in a C
extension, the kernel's OOM killer. The record's offset was never committed, so it is
delivered again after the restart and, run again, ends the process again: a crash loop that
stalls every other record of its partition. Each step therefore leaves a marker file while
it runs (``<folder>/<topic>-<partition>-<offset>``, holding the writer's pid, a token of the
writing process and how many processes died running it before); a normal end, the service's
own cancellation included, removes it. A marker whose writer is dead, found when its record
is delivered again, says that record was running when that process died.

One death does not convict: a process killed from outside (``SIGKILL`` on failover, a lost
machine) dies with innocent steps running, and those must run again. A record found this way
runs again *alone* (no other step of the replica runs beside it, see ``Solo``); one whose
process died again while it ran alone is the cause: at its next delivery the agent ends its
trace with a ``step.failed`` saying so and dead-letters it, without running it (its marker
stays until that outcome's offset is committed, so it is never run again meanwhile).

Markers are local files, so they see restarts on the same machine (``choreo up``, a pod's
restarted container with the folder on a volume); a record moved to another machine's
replica runs again there. The writes cost one small file per step (no fsync: a process's
death keeps the page cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiokafka.structs import ConsumerRecord, TopicPartition

log = logging.getLogger(__name__)

#: Process deaths during one record's step that make it the cause (the last one alone).
DEATHS = 2


@dataclass(frozen=True)
class Verdict:
    """What the markers say about a delivered record: how many processes died running its
    step (``deaths``), and whether that makes it the cause (``convicted``) or a suspect to run
    alone (``deaths > 0``)."""

    deaths: int = 0
    convicted: bool = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class StepMarkers:
    """The marker files of one consumer group's steps on this machine, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pid = os.getpid()
        #: This process's own mark: a restarted container's process may have the same pid.
        self.token = uuid.uuid4().hex
        #: The convicted records whose outcome waits for its commit, by partition.
        self._convicted: dict[TopicPartition, set[int]] = {}
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # markers are a safety net: the agent runs without them
            log.warning("step markers off", extra={"folder": str(folder), "error": str(exc)})

    @staticmethod
    def key(record: ConsumerRecord[bytes, bytes]) -> str:
        return f"{record.topic}-{record.partition}-{record.offset}"

    def judge(self, record: ConsumerRecord[bytes, bytes]) -> Verdict:
        """Whether a process died running ``record``'s step before, and what follows."""
        try:
            pid_text, token, deaths_text = (self.folder / self.key(record)).read_text().split()
            pid, before = int(pid_text), int(deaths_text)
        except (OSError, ValueError):  # no marker (the usual case), or a torn one
            return Verdict()
        if before >= DEATHS:  # convicted already; its outcome was not committed yet
            return Verdict(before, convicted=True)
        if token == self.token or (pid != self.pid and _alive(pid)):
            return Verdict()  # running here or in a live replica (a rebalance overlapped)
        deaths = before + 1
        return Verdict(deaths, convicted=deaths >= DEATHS)

    def running(self, record: ConsumerRecord[bytes, bytes], deaths: int) -> None:
        """Mark ``record``'s step as running here, after ``deaths`` deaths during it."""
        path, text = self.folder / self.key(record), f"{self.pid} {self.token} {deaths}"
        with contextlib.suppress(OSError):
            try:
                path.write_text(text)
            except FileNotFoundError:  # tidied away by a replica of this process that stopped
                self.folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text)

    def done(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """The step ended (or was cancelled) without ending the process."""
        with contextlib.suppress(OSError):
            (self.folder / self.key(record)).unlink(missing_ok=True)

    def convicted(self, record: ConsumerRecord[bytes, bytes], deaths: int) -> None:
        """``record`` is the cause: its marker stays until its offset is committed (see
        ``committed``), so a process that dies before that convicts it again, unrun."""
        self.running(record, deaths)
        self._convicted.setdefault(TopicPartition(record.topic, record.partition), set()).add(
            record.offset
        )

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Offsets committed (each partition's next offset to read): the convicted records
        before them are settled."""
        for tp, next_offset in offsets.items():
            settled = {o for o in self._convicted.get(tp, ()) if o < next_offset}
            for offset in settled:
                with contextlib.suppress(OSError):
                    (self.folder / f"{tp.topic}-{tp.partition}-{offset}").unlink(missing_ok=True)
            if settled:
                self._convicted[tp] -= settled

    def tidy(self) -> None:
        """Remove the folder if no marker is left in it (the service stops)."""
        with contextlib.suppress(OSError):
            self.folder.rmdir()


class Solo:
    """Steps run side by side, except a suspect's, which runs with no other step beside it
    (those that arrive meanwhile wait; it waits for those running to end)."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._running = 0
        self._alone = False
        self._waiting = 0  # suspects waiting their turn: new steps wait behind them

    @contextlib.asynccontextmanager
    async def step(self, alone: bool) -> AsyncIterator[None]:
        async with self._changed:
            if alone:
                self._waiting += 1
                try:
                    await self._changed.wait_for(lambda: not self._alone and not self._running)
                finally:
                    self._waiting -= 1
                self._alone = True
            else:
                await self._changed.wait_for(lambda: not self._alone and not self._waiting)
            self._running += 1
        try:
            yield
        finally:
            async with self._changed:
                self._running -= 1
                if alone:
                    self._alone = False
                self._changed.notify_all()
