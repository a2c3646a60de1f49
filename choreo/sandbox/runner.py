"""One confined run: spawn, feed stdin, keep bounded output, enforce the wall clock, classify.

A run is ended through its reaper (choreo.sandbox.reaper): releasing the run's lifeline, or
this process ending, has the reaper SIGKILL bubblewrap and its child (pid 1 of the run's pid
namespace), and the kernel then kills every process left in that namespace — a fork bomb
included. Should the reaper not answer, or be killed, the run's process group is SIGKILLed
and what it leaves to this process is reaped (``_reap_group``, ``_reap``).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from choreo.sandbox.isolation import RunFds, Toolchain, command
from choreo.sandbox.reaper import children
from choreo.tools.sandbox.limits import SandboxLimits
from choreo.tools.sandbox.protocol import RunRequest, SandboxResult

PR_SET_CHILD_SUBREAPER = 36
DRAIN_S = 5.0  # after the run ends, how long its pipes may take to close
REAPER_GRACE_S = 5.0  # after its lifeline is released, how long the reaper may take to end
SIGNAL_REASONS: dict[int, str] = {
    signal.SIGXCPU: "CPU time limit reached",
    signal.SIGXFSZ: "file size limit reached",
    signal.SIGKILL: "killed (SIGKILL)",
}


@dataclass
class Lifeline:
    """The write end of a run's lifeline pipe (choreo.sandbox.reaper), held by this process
    alone: the reaper ends the run once it is released, or once this process ends."""

    fd: int | None

    def release(self) -> None:
        """Close the write end (once; later calls do nothing)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class Captured:
    """The first ``limit`` bytes of a stream, and whether more came."""

    data: bytes = b""
    truncated: bool = False

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


async def execute(
    tools: Toolchain, limits: SandboxLimits, request: RunRequest, timeout_s: float
) -> SandboxResult:
    """Run ``request`` confined; never raises for anything the code does."""
    with _run_fds(tools, request) as (fds, status_read, lifeline):
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *command(tools, limits, fds),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=fds.passed(),
                start_new_session=True,
                env={},
                **_identity(limits),
            )
        except OSError as exc:
            return SandboxResult(status="refused", reason=f"cannot start the sandbox: {exc}")
        try:
            timed_out, out, err = await _supervise(
                proc, lifeline, request.stdin.encode(), timeout_s, limits.output_bytes
            )
        finally:
            if proc.returncode is None:
                await _end(proc, lifeline)
        duration_ms = int((time.monotonic() - started) * 1000)
        child_pid = _read_status(status_read).get("child-pid")
    if proc.returncode is not None and proc.returncode < 0:
        await _reap_group(proc.pid)
    if isinstance(child_pid, int):
        await _reap(child_pid)
    return _classify(
        proc.returncode, timed_out, child_pid is not None, out, err, duration_ms, timeout_s, limits
    )


def become_subreaper() -> None:
    """Adopt the runs' orphans. bubblewrap may exit before its child (pid 1 of the run's pid
    namespace) is reaped; that zombie still counts against the sandbox uid's RLIMIT_NPROC, and
    where this service is pid 1 of a container nobody else would ever reap it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


async def _reap(pid: int) -> None:
    """Reap the run's namespace init if it became our child (see ``become_subreaper``).

    Only a child of ours is touched: an unreaped child's pid cannot be reused, so the kill
    below can never hit an unrelated process.
    """
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # noqa: ASYNC222 (WNOHANG never blocks)
            return
    except ChildProcessError:  # not ours: already gone, or another process adopted it
        return
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        await asyncio.to_thread(os.waitpid, pid, 0)


def _identity(limits: SandboxLimits) -> dict[str, Any]:
    """Started as root, runs go to an unprivileged uid: RLIMIT_NPROC does not bind root."""
    if os.geteuid() != 0:
        return {}
    return {"user": limits.host_uid, "group": limits.host_gid, "extra_groups": []}


@contextmanager
def _run_fds(tools: Toolchain, request: RunRequest) -> Iterator[tuple[RunFds, int, Lifeline]]:
    """Memory files for the filter, the code and each input file, bubblewrap's status pipe
    (its read end is the second value) and the reaper's lifeline; all closed on exit."""
    opened: list[int] = []

    def memfd(name: str, data: bytes) -> int:
        fd = os.memfd_create(name)
        opened.append(fd)
        with open(fd, "wb", closefd=False) as handle:
            handle.write(data)
        os.lseek(fd, 0, os.SEEK_SET)
        return fd

    lifeline = Lifeline(None)
    try:
        status_read, status_write = os.pipe()
        opened += (status_read, status_write)
        lifeline_read, lifeline.fd = os.pipe()  # the write end is never inherited
        opened.append(lifeline_read)
        fds = RunFds(
            lifeline=lifeline_read,
            seccomp=memfd("seccomp", tools.seccomp),
            status=status_write,
            code=memfd("main.py", request.code.encode()),
            files={name: memfd("file", body.encode()) for name, body in request.files.items()},
        )
        yield fds, status_read, lifeline
    finally:
        lifeline.release()
        for fd in opened:
            os.close(fd)


async def _supervise(
    proc: asyncio.subprocess.Process,
    lifeline: Lifeline,
    stdin: bytes,
    timeout_s: float,
    limit: int,
) -> tuple[bool, Captured, Captured]:
    assert proc.stdin and proc.stdout and proc.stderr
    out = asyncio.create_task(_capture(proc.stdout, limit))
    err = asyncio.create_task(_capture(proc.stderr, limit))
    feed = asyncio.create_task(_feed(proc.stdin, stdin))
    timed_out = False
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        timed_out = True
        await _end(proc, lifeline)
    _done, pending = await asyncio.wait((out, err, feed), timeout=DRAIN_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return timed_out, _result_or_empty(out), _result_or_empty(err)


def _result_or_empty(task: asyncio.Task[Captured]) -> Captured:
    return task.result() if task.done() and not task.cancelled() else Captured(truncated=True)


async def _capture(stream: asyncio.StreamReader, limit: int) -> Captured:
    """Keep the first ``limit`` bytes; read and drop the rest so the writer never blocks."""
    kept = bytearray()
    truncated = False
    while chunk := await stream.read(64 * 1024):
        room = limit - len(kept)
        kept += chunk[: max(room, 0)]
        truncated = truncated or len(chunk) > room
    return Captured(bytes(kept), truncated)


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stream.write(data)
        await stream.drain()
        stream.close()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def _end(proc: asyncio.subprocess.Process, lifeline: Lifeline) -> None:
    """End the run: release its lifeline, so its reaper kills and reaps every process of it;
    should the reaper not end in time, SIGKILL the run's process group."""
    lifeline.release()
    try:
        await asyncio.wait_for(proc.wait(), REAPER_GRACE_S)
    except TimeoutError:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def _reap_group(pgid: int) -> None:
    """After a reaper died by a signal (``_end``'s SIGKILL, or one from outside), kill what is
    left of its process group and reap it: bubblewrap, re-parented to this process, would stay
    a zombie counting against the sandbox uid's RLIMIT_NPROC."""
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    for pid in children(os.getpid(), pgid):
        with suppress(ChildProcessError):
            await asyncio.to_thread(os.waitpid, pid, 0)


def _read_status(fd: int) -> dict[str, Any]:
    """Merge bubblewrap's ``--json-status-fd`` documents (``child-pid`` once set up)."""
    os.set_blocking(fd, False)
    raw = b""
    try:
        while chunk := os.read(fd, 65536):
            raw += chunk
    except BlockingIOError:
        pass
    merged: dict[str, Any] = {}
    decoder, text, index = json.JSONDecoder(), raw.decode("utf-8", "replace"), 0
    while (index := _skip_space(text, index)) < len(text):
        try:
            doc, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:
            break
        if isinstance(doc, dict):
            merged.update(doc)
    return merged


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index].isspace():
        index += 1
    return index


def _classify(
    returncode: int | None,
    timed_out: bool,
    sandbox_started: bool,
    out: Captured,
    err: Captured,
    duration_ms: int,
    timeout_s: float,
    limits: SandboxLimits,
) -> SandboxResult:
    """Map how the run ended to a status. bubblewrap reports a signal death as 128 + signal."""
    common: dict[str, Any] = {
        "stdout": out.text(),
        "stderr": err.text(),
        "stdout_truncated": out.truncated,
        "stderr_truncated": err.truncated,
        "duration_ms": duration_ms,
    }
    if timed_out:
        return SandboxResult(
            status="timeout",
            signal=signal.SIGKILL,
            **common,
            reason=f"wall clock limit of {timeout_s:g} s reached; run killed",
        )
    if not sandbox_started:
        return SandboxResult(
            status="refused",
            **common,
            reason=f"sandbox setup failed: {err.text().strip() or returncode}",
        )
    assert returncode is not None
    number = -returncode if returncode < 0 else returncode - 128
    if returncode < 0 or 0 < number < signal.NSIG:
        reason = SIGNAL_REASONS.get(number) or f"killed by {_signal_name(number)}"
        if number == signal.SIGXCPU:
            reason += f" ({limits.cpu_s} s)"
        return SandboxResult(
            status="killed", exit_code=returncode, signal=number, reason=reason, **common
        )
    return SandboxResult(
        status="ok" if returncode == 0 else "error", exit_code=returncode, **common
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
