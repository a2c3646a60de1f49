"""The run's reaper: the process between the sandbox service and bubblewrap that ends the
whole run when the service ends, however it ends.

bubblewrap's ``--die-with-parent`` has each of its processes set the parent-death signal
only once it is set up. A service killed in those first milliseconds left runs behind: the
outer bubblewrap then lived on and ran the code to its end, or its child, pid 1 of the run's
pid namespace, waited forever for a parent that was gone. The reaper needs no signal. It
holds the read end of a pipe (the lifeline) whose only write end is the service's, so the
pipe reads end-of-file once the service has ended, at whatever moment and by whatever means,
SIGKILL included; the reaper then SIGKILLs every process under it. It is a child subreaper
(``PR_SET_CHILD_SUBREAPER``, proc(5)), so a process whose parent died on the way, such as
bubblewrap's namespace init, is re-parented to it and cannot slip away.

It runs as ``python -I -S -c <this module's source> LIFELINE_FD COMMAND...``, as the
sandbox's host user, who may not be able to read the installed package, with the sandbox's
interpreter: the standard library only, and few modules of it (it starts before every run).
Its exit mirrors the command's: the same exit code, or death by the same signal. Its own
errors go to the run's stderr.
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36
NO_COMMAND = 127
#: Python ignores these at start-up; the command gets them back at their defaults, as
#: ``subprocess`` gives its children (``restore_signals``).
RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)


def main(argv: list[str]) -> None:
    """``argv``: the lifeline's descriptor, then the command to run under the reaper."""
    lifeline, command = int(argv[1]), argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"reaper: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # mirroring a fatal signal dumps no core
    try:
        child = os.posix_spawnp(
            command[0],
            command,
            os.environ,
            file_actions=[(os.POSIX_SPAWN_CLOSE, lifeline)],
            setsigdef=RESTORED,
        )
    except OSError as exc:
        os.write(2, f"reaper: cannot run {command[0]}: {exc}\n".encode())
        os._exit(NO_COMMAND)
    try:
        status = _wait(child, lifeline)
    except BaseException as exc:  # whatever went wrong, nothing may outlive us
        os.write(2, f"reaper: {exc!r}; killing the run\n".encode())
        status = None
    _kill_everything_under_us()
    if status is None:
        os._exit(128 + signal.SIGKILL)
    _exit_like(status)


def _wait(child: int, lifeline: int) -> int | None:
    """The command's wait status once it ends, or None once the lifeline is let go of."""
    os.closerange(3, lifeline)  # the run's files are the command's, not ours
    os.closerange(lifeline + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    ended = select.poll()
    ended.register(lifeline, select.POLLIN)
    look_every_ms: int | None = None
    try:
        ended.register(os.pidfd_open(child), select.POLLIN)
    except (OSError, AttributeError):  # no pidfd (Linux < 5.3, Python < 3.9): look now and then
        look_every_ms = 20
    while True:
        if any(fd == lifeline for fd, _ in ended.poll(look_every_ms)):  # the service let go
            return None
        reaped, status = os.waitpid(child, os.WNOHANG)
        if reaped:
            return status


def _kill_everything_under_us() -> None:
    """Reap our children, SIGKILLing those still running, until none is left. Killing a
    namespace's pid 1 kills the whole namespace; a grandchild orphaned meanwhile is
    re-parented to us and found next round. Usually there is none, and no ``/proc`` scan."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:  # one still runs
                for pid in children(os.getpid()):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                os.waitpid(-1, 0)
        except ChildProcessError:
            return


def children(parent: int, group: int | None = None) -> list[int]:
    """The pids whose parent is ``parent`` (and, given ``group``, whose process group it is),
    from each process's ``/proc/PID/stat``: state, parent and group follow the name."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:  # ended while we looked
            continue
        if int(fields[1]) == parent and group in (None, int(fields[2])):
            found.append(int(name))
    return found


def _exit_like(status: int) -> None:
    """Exit as the command did: its exit code, or death by its signal."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number not in (signal.SIGKILL, signal.SIGSTOP):  # these have no handler to reset
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        os._exit(128 + number)  # a signal whose default is not to end the process
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main(sys.argv)
