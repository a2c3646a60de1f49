"""How one run is isolated: the tools it needs and the exact command line that confines it.

The command is ``python -I -S -c <reaper> FD prlimit <rlimits> -- bwrap <namespaces, mounts,
seccomp> -- python main.py``. The reaper (choreo.sandbox.reaper) ends the run when the service
ends; ``prlimit`` sets the limits on itself and execs bubblewrap, so every process of the run
inherits them; bubblewrap builds an empty root holding read-only system directories and a
size-limited tmpfs, in fresh namespaces (no network), as an unprivileged user.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from choreo.sandbox import reaper
from choreo.sandbox.seccomp import UnsupportedArch, compile_filter
from choreo.tools.sandbox.limits import MIB, SandboxLimits, default_python

SANDBOX_UID = 65534
WORKDIR = "/tmp"
# Linked or bound read-only from the host when present: binaries, libraries, loader cache.
SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
)


class IsolationUnavailable(RuntimeError):
    """Something the sandbox needs is missing; the message names it. Nothing may run.

    Not a ``ChoreoError``: the service keeps it as its health problem and answers every run
    with a ``refused`` result naming it; no caller ever catches this."""


@dataclass(frozen=True)
class Toolchain:
    """The located tools of one service process."""

    bwrap: str
    prlimit: str
    python: Path
    seccomp: bytes
    reaper: str  # the source of choreo.sandbox.reaper, run with ``python -c``

    def missing(self) -> str | None:
        """Re-check, cheaply, that the tools are still there (called before every run)."""
        for path in (self.bwrap, self.prlimit, str(self.python)):
            if not os.access(path, os.X_OK):
                return f"{path} is no longer executable"
        return None


def locate(limits: SandboxLimits) -> Toolchain:
    """Find every tool, or raise IsolationUnavailable naming the first one missing."""
    bwrap = shutil.which(limits.bwrap)
    if bwrap is None:
        raise IsolationUnavailable(
            f"bubblewrap not found ({limits.bwrap!r}): install the 'bubblewrap' package"
        )
    prlimit = shutil.which(limits.prlimit)
    if prlimit is None:
        raise IsolationUnavailable(
            f"prlimit not found ({limits.prlimit!r}): install the 'util-linux' package"
        )
    python = limits.python or default_python()
    if python is None or not os.access(python, os.X_OK):
        raise IsolationUnavailable(
            f"no python3 interpreter the sandbox user can run ({python}): set CHOREO_SANDBOX_PYTHON"
        )
    try:
        seccomp = compile_filter()
    except UnsupportedArch as exc:
        raise IsolationUnavailable(str(exc)) from exc
    try:
        reaper_source = Path(reaper.__file__).read_text()
    except OSError as exc:  # an install without the module's source
        raise IsolationUnavailable(f"the run's reaper has no source to run: {exc}") from exc
    return Toolchain(
        bwrap=bwrap,
        prlimit=prlimit,
        python=Path(python).resolve(),
        seccomp=seccomp,
        reaper=reaper_source,
    )


@dataclass(frozen=True)
class RunFds:
    """Descriptors handed to the reaper (``lifeline``, the read end of a pipe whose write end
    only the service holds) and to bubblewrap (the rest); all passed with ``pass_fds``."""

    lifeline: int
    seccomp: int
    status: int
    code: int
    files: dict[str, int]

    def passed(self) -> tuple[int, ...]:
        return (self.lifeline, self.seccomp, self.status, self.code, *self.files.values())


def command(tools: Toolchain, limits: SandboxLimits, fds: RunFds) -> list[str]:
    """The full argv of one run."""
    return [
        str(tools.python),
        "-I",
        "-S",
        "-c",
        tools.reaper,
        str(fds.lifeline),
        *_rlimits(tools, limits),
        "--",
        tools.bwrap,
        *_namespaces(),
        *_filesystem(tools, limits),
        *_payload(fds),
        "--seccomp",
        str(fds.seccomp),
        "--json-status-fd",
        str(fds.status),
        "--",
        str(tools.python),
        "-E",
        "-s",
        "-B",
        f"{WORKDIR}/main.py",
    ]


def _rlimits(tools: Toolchain, limits: SandboxLimits) -> list[str]:
    # CPU: SIGXCPU at the soft limit, SIGKILL a second later if it is caught.
    return [
        tools.prlimit,
        f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}",
        f"--as={limits.memory_mb * MIB}",
        f"--nproc={limits.max_processes}",
        f"--fsize={limits.file_size_mb * MIB}",
        f"--nofile={limits.open_files}",
        "--core=0",
    ]


def _namespaces() -> list[str]:
    return [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "sandbox",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/local/bin:/usr/bin:/bin",
        "--setenv",
        "HOME",
        WORKDIR,
        "--setenv",
        "TMPDIR",
        WORKDIR,
        "--setenv",
        "LANG",
        "C.UTF-8",
    ]


def _filesystem(tools: Toolchain, limits: SandboxLimits) -> list[str]:
    """Read-only /usr and friends, the interpreter's prefix, fresh /proc and /dev, private tmp."""
    args = ["--ro-bind", "/usr", "/usr"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    prefix = tools.python.parent.parent
    if not any(prefix.is_relative_to(p) for p in ("/usr", *SYSTEM_DIRS)):
        args += ["--ro-bind", str(prefix), str(prefix)]
    tmp_bytes = str(limits.tmp_mb * MIB)
    return [
        *args,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        tmp_bytes,
        "--tmpfs",
        "/dev/shm",
        "--size",
        tmp_bytes,
        "--tmpfs",
        WORKDIR,
    ]


def _payload(fds: RunFds) -> list[str]:
    """Code and files copied into the private tmp, then the root made read-only."""
    args = ["--file", str(fds.code), f"{WORKDIR}/main.py"]
    for name, fd in sorted(fds.files.items()):
        args += ["--file", str(fd), f"{WORKDIR}/{name}"]
    return [*args, "--chdir", WORKDIR, "--remount-ro", "/"]
