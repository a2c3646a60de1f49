"""Child processes that die with their parent, however the parent ends (SIGKILL included).

Every process Choreo starts (the services of ``choreo up``, the brokers, the model server,
MCP stdio servers) is given Linux's parent-death signal: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``
in the child before it runs its program. The kernel then kills the child when its parent
ends, by any means, so nothing is left running for good when a ``choreo up``, an agent or a
test run is killed. The setting survives ``exec``, so it holds for programs that are not
ours (Java, the broker binary, any MCP server).

Two caveats, both documented in docs/ARCHITECTURE.md: the signal fires when the *thread*
that started the child ends, not the process, so children must be started from a thread
that lives as long as the process (the main thread, or the spawning thread below); and a
parent that dies between ``fork`` and ``prctl`` would leave an orphan that never gets the
signal, so the child checks its parent is still the one that started it and ends itself if
not.

Choreo's own starts go through :func:`popen`, which forks from the calling thread when it is
the main thread and otherwise from one daemon thread kept for the life of the process (a
child started from a worker thread, such as a broker started by ``asyncio.to_thread``, would
die with that thread). Where a library starts the process (the MCP SDK's stdio client),
:func:`lifeline_argv` puts a small exec wrapper in front of the command instead. On other
systems than Linux the signal is not set.
"""

from __future__ import annotations

import ctypes
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

#: From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1

#: Looked up once here: a child of a threaded parent must not take the loader's lock.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None

#: The exec wrapper of :func:`lifeline_argv`: set the signal, check the parent that started
#: it is still there (else it died before the signal was set), then become the command.
_WRAPPER = (
    "import ctypes,os,signal,sys\n"
    f"ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG},signal.SIGKILL,0,0,0)\n"
    "os.getppid()==int(sys.argv[1]) or os._exit(137)\n"
    "os.execvp(sys.argv[2],sys.argv[2:])\n"
)


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` (and ``asyncio``'s subprocesses) that has
    the kernel SIGKILL the child when the thread that forked it ends; None off Linux.

    Start the child from a thread that lives as long as the process (see :func:`popen`)."""
    prctl = _prctl
    if prctl is None:
        return None
    parent = os.getpid()

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was set
            os._exit(137)

    return in_child


def popen(argv: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, **options)`` whose child is SIGKILLed when this process ends.

    ``options`` are Popen's, without ``preexec_fn`` (this sets it). Started from the main
    thread directly, from any other thread through the process's spawning thread.
    """

    def start() -> subprocess.Popen[Any]:
        return subprocess.Popen(list(argv), preexec_fn=die_with_parent(), **options)

    if threading.current_thread() is threading.main_thread():
        return start()
    started: Future[subprocess.Popen[Any]] = Future()
    _spawner().put((start, started))
    return started.result()


_Request = tuple[Callable[[], subprocess.Popen[Any]], "Future[subprocess.Popen[Any]]"]
_requests: queue.SimpleQueue[_Request] | None = None
_requests_lock = threading.Lock()


def _spawner() -> queue.SimpleQueue[_Request]:
    """The queue of the daemon thread that starts children for other threads (started once)."""
    global _requests
    with _requests_lock:
        if _requests is None:
            _requests = queue.SimpleQueue()
            threading.Thread(
                target=_spawn_forever, args=(_requests,), name="choreo-children", daemon=True
            ).start()
        return _requests


def _spawn_forever(requests: queue.SimpleQueue[_Request]) -> None:
    while True:
        start, started = requests.get()
        try:
            started.set_result(start())
        except BaseException as exc:
            started.set_exception(exc)


def lifeline_argv(argv: Sequence[str], cwd: str | None = None) -> list[str]:
    """``argv`` behind an exec wrapper that sets the parent-death signal, for processes
    started by code that takes no ``preexec_fn``.

    The wrapper is this interpreter (``-I -S``: no ``PYTHON*`` variables, no site; about
    15 ms) and replaces itself with ``argv[0]`` through ``exec``, keeping the pid, stdio and
    environment. Start it from a thread that lives as long as the process (the event loop's
    in a service).
    When ``argv[0]`` cannot be found (on PATH, or relative to ``cwd``), ``argv`` comes back
    unchanged, so the starter's own "not found" error names the command as before.
    """
    command = list(argv)
    if sys.platform != "linux" or not command:
        return command
    program = command[0]
    if os.sep in program:
        found = os.access(os.path.join(cwd or ".", program), os.X_OK)
    else:
        found = shutil.which(program) is not None
    if not found:
        return command
    return [sys.executable, "-I", "-S", "-c", _WRAPPER, str(os.getpid()), *command]
