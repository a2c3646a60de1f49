"""Hostile code through the real service: each attack is contained, and the host is unchanged
afterwards (no file written outside the sandbox, no process of a run left behind)."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sandbox.sandbox_support import Service, requires_bwrap, wait_until_no_sandbox_processes

pytestmark = [requires_bwrap, pytest.mark.integration]


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    yield
    wait_until_no_sandbox_processes()


def test_network_is_unreachable(sandbox: Service) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        code = f"""
import socket
for family, address in ((socket.AF_INET, ("127.0.0.1", {port})), (socket.AF_INET6, ("::1", 80)),
                        (socket.AF_INET, ("1.1.1.1", 53))):
    try:
        socket.create_connection(address, timeout=2)
        print("connected", address)
    except OSError as exc:
        print(type(exc).__name__, exc.errno)
try:
    s = socket.socket(socket.AF_UNIX)
    s.connect({str(sandbox.socket)!r})
    print("reached the service socket")
except OSError as exc:
    print(type(exc).__name__)
"""
        result = sandbox.run(code)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host
    assert result.status == "ok", result.stderr
    assert result.stdout.splitlines() == ["PermissionError 1"] * 3 + ["FileNotFoundError"]


def test_fork_bomb_is_contained(sandbox: Service, sandbox_limits: dict[str, str]) -> None:
    counted = sandbox.run("""
import os, time
children = 0
while True:
    try:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
    except OSError:
        break
print(children)
""")
    assert counted.status == "ok", counted.stderr
    assert 0 < int(counted.stdout) < int(sandbox_limits["CHOREO_SANDBOX_MAX_PROCESSES"])
    wait_until_no_sandbox_processes()  # the sleeping children died with the run

    bomb = sandbox.run(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        timeout_s=3,
    )
    assert bomb.status in ("timeout", "killed"), bomb


def test_memory_bomb_is_contained(sandbox: Service) -> None:
    result = sandbox.run(
        """
hog = []
try:
    while True:
        hog.append(bytearray(16 * 1024 * 1024))
except MemoryError:
    print("refused after", len(hog) * 16, "MiB")
""",
        timeout_s=30,
    )  # generous wall clock: the memory limit, not the clock, must stop it
    assert result.status == "ok", result.stderr
    refused_at = int(result.stdout.split()[2])
    assert refused_at < 256  # CHOREO_SANDBOX_MEMORY_MB


def test_sleeping_forever_is_killed_by_the_wall_clock(sandbox: Service) -> None:
    result = sandbox.run("import time\nprint('started', flush=True)\ntime.sleep(600)", timeout_s=1)
    assert result.status == "timeout"
    assert result.stdout == "started\n"
    assert "wall clock" in (result.reason or "")


def test_busy_loop_is_killed_by_the_cpu_limit(sandbox: Service) -> None:
    result = sandbox.run("while True:\n    pass", timeout_s=30)  # CPU limit (2 s) fires first
    assert result.status == "killed"
    assert result.signal == signal.SIGXCPU
    assert "CPU time limit" in (result.reason or "")


def test_disk_fill_is_stopped(sandbox: Service) -> None:
    result = sandbox.run("""
import errno
chunk = b"x" * (1024 * 1024)
def fill(paths):
    written = 0
    for path in paths:
        try:
            with open(path, "wb") as f:
                while True:
                    f.write(chunk)
                    f.flush()
                    written += 1
        except OSError as exc:
            if exc.errno != errno.EFBIG:
                return written, errno.errorcode[exc.errno]
    return written, "EFBIG"
print(*fill(["/tmp/one"]))
print(*fill(f"/tmp/many{i}" for i in range(100)))
print(*fill(f"/dev/shm/many{i}" for i in range(100)))
""")
    assert result.status == "ok", result.stderr
    one, many, shm = (line.split() for line in result.stdout.splitlines())
    assert one[1] == "EFBIG" and int(one[0]) <= 4  # CHOREO_SANDBOX_FILE_SIZE_MB
    assert many[1] == "ENOSPC" and int(many[0]) <= 8  # CHOREO_SANDBOX_TMP_MB
    assert shm[1] == "ENOSPC" and int(shm[0]) <= 8


def test_writes_outside_its_tmp_are_refused_and_the_host_is_unchanged(sandbox: Service) -> None:
    # The host's /tmp path is the run's own private /tmp inside: writable there, absent here.
    marker = Path("/tmp") / f"choreo-sandbox-escape-{os.getpid()}" / "marker"
    home = Path(os.path.expanduser("~"))
    targets = [
        "/etc/x",
        "/work/x",
        "/usr/x",
        "/x",
        str(home / "x"),
        str(Path(__file__).resolve().parent / "x"),
    ]
    code = f"""
import os
for path in {targets!r}:
    try:
        open(path, "w").write("escaped")
        print("wrote", path)
    except OSError as exc:
        print("refused", path)
os.makedirs({str(marker.parent)!r})
open({str(marker)!r}, "w").write("only in the sandbox's own /tmp")
print("marker", os.path.exists({str(marker)!r}))
print("project visible", os.path.exists({str(Path(__file__).resolve())!r}))
"""
    result = sandbox.run(code)
    assert result.status == "ok", result.stderr
    lines = result.stdout.splitlines()
    assert lines == [f"refused {target}" for target in targets] + [
        "marker True",
        "project visible False",
    ]
    assert not marker.parent.exists()
    for target in targets:
        assert not Path(target).exists(), target
