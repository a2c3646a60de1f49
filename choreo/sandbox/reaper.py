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
sandbox's host user, who may not be able to read the installed package: the standard library
only, and few modules of it (it starts before every run). Its exit mirrors the command's: the
same exit code, or death by the same signal.
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import sys

PR_SET_CHILD_SUBREAPER = 36
SIGKILL = 9  # the number on every Linux ABI; the signal module costs 4 ms to import
NO_COMMAND = 127


def main(argv: list[str]) -> None:
    """``argv``: the lifeline's descriptor, then the command to run under the reaper."""
    lifeline, command = int(argv[1]), argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"reaper: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # mirroring a fatal signal dumps no core
    child = os.fork()
    if child == 0:
        os.close(lifeline)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"reaper: cannot run {command[0]}: {exc}\n".encode())
        os._exit(NO_COMMAND)
    _keep_only(lifeline)
    ended = select.poll()
    ended.register(lifeline, select.POLLIN)
    try:
        ended.register(os.pidfd_open(child), select.POLLIN)
        look_every_ms = None
    except OSError:  # a kernel before 5.3 has no pidfd: look at the child now and then
        look_every_ms = 20
    while True:
        if any(fd == lifeline for fd, _ in ended.poll(look_every_ms)):  # the service let go
            _kill_everything_under_us()
            os._exit(128 + SIGKILL)
        reaped, status = os.waitpid(child, os.WNOHANG)
        if reaped:
            break
    _kill_everything_under_us()  # an orphan of the run, re-parented to us
    _exit_like(status)


def _keep_only(lifeline: int) -> None:
    """Drop every descriptor but the lifeline: the run's pipes and files are the command's,
    and the service sees the run's output end when the run's own processes end."""
    with open(os.devnull, "rb+") as null:
        for fd in (0, 1, 2):
            os.dup2(null.fileno(), fd)
    os.closerange(3, lifeline)
    os.closerange(lifeline + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _kill_everything_under_us() -> None:
    """Reap our children, SIGKILLing those still running, until none is left. Killing a
    namespace's pid 1 kills the whole namespace; a grandchild orphaned meanwhile is
    re-parented to us and found next round. Usually there is none, and no ``/proc`` scan."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:  # one still runs
                for pid in _children():
                    try:
                        os.kill(pid, SIGKILL)
                    except ProcessLookupError:
                        continue
                os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _children() -> list[int]:
    """Our children's pids, from each process's ``stat`` (the parent pid follows the name)."""
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:  # ended while we looked
            continue
        if int(fields[1]) == me:
            found.append(int(name))
    return found


def _exit_like(status: int) -> None:
    if os.WIFSIGNALED(status):
        import signal  # only here, where a run ended by a signal, to keep every start fast

        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        os._exit(128 + number)  # a signal whose default is not to end the process
    os._exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main(sys.argv)
