"""Run the scripted model server as a child process and learn its URL from its first line."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from choreo.kafka.children import popen

#: ``-P`` keeps the current folder off the import path (see ``CHOREO_CLI``).
_SERVER = (sys.executable, "-P", "-m", "choreo.model_server")

#: How ``server.serve`` starts its one stdout line, the bound URL following it.
ANNOUNCEMENT = "listening on "


def start_model_server_process(
    script: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 15.0,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m choreo.model_server SCRIPT --port 0``; return it and its base URL.

    ``env`` replaces the child's environment (default: this process's). The caller owns the
    process: terminate and wait for it. Raises ``RuntimeError`` with the server's stderr if it
    exits or stays silent past ``timeout_s``.
    """
    return start_announcing(
        [*_SERVER, str(script), "--port", "0"], f"model server for {script}", env, timeout_s
    )


def start_announcing(
    argv: Sequence[str],
    what: str,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 15.0,
) -> tuple[subprocess.Popen[str], str]:
    """Start a server ``argv`` that prints ``listening on URL`` first; return it and the URL.

    The caller owns the process (``stop_model_server_process`` stops it). Raises
    ``RuntimeError`` naming ``what``, with the server's stderr, if it exits or stays silent
    past ``timeout_s``.
    """
    # stderr goes to a file, not a pipe: nobody reads it while the server runs, so it must
    # never fill up and block the child.
    with tempfile.TemporaryFile(mode="w+") as stderr:
        proc = popen(  # dies with this process, even by SIGKILL
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=dict(env) if env is not None else None,
        )
        line = _first_line(proc, timeout_s)
        if line.startswith(ANNOUNCEMENT):
            return proc, line.removeprefix(ANNOUNCEMENT).strip()
        proc.kill()
        proc.wait()
        stderr.seek(0)
        detail = stderr.read().strip() or line.strip() or "no output"
    raise RuntimeError(f"{what} did not start:\n{detail}")


def stop_model_server_process(proc: subprocess.Popen[str], timeout_s: float = 10.0) -> int:
    """SIGTERM, then wait; kill if it will not go. Returns the exit code (0 on a clean stop)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


@contextmanager
def model_server(script: Path, *, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run a scripted model server for the duration of a ``with`` block; yields its base URL."""
    proc, url = start_model_server_process(script, env=env)
    try:
        yield url
    finally:
        stop_model_server_process(proc)


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The child's first stdout line, or "" if it exits or the deadline passes first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    buffer = b""
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return ""
            chunk = os.read(fd, 4096)
            if not chunk:
                return ""
            buffer += chunk
    return buffer.decode(errors="replace").partition("\n")[0]
