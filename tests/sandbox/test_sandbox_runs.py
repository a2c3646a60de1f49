"""Ordinary runs through the real service: output, exit codes, stdin and files, truncation,
request validation, health and metrics, and the TCP listener."""

from __future__ import annotations

import pytest

from choreo.sandbox import SandboxError
from tests.sandbox.sandbox_support import Service, requires_bwrap, start_service

pytestmark = [requires_bwrap, pytest.mark.integration]


def test_normal_run_returns_stdout_and_exit_code(sandbox: Service) -> None:
    result = sandbox.run("import sys\nprint('hello', 6 * 7)\nprint('oops', file=sys.stderr)")
    assert (result.status, result.exit_code) == ("ok", 0)
    assert result.stdout == "hello 42\n"
    assert result.stderr == "oops\n"
    assert not result.stdout_truncated and not result.stderr_truncated


def test_repeated_runs_do_not_use_up_the_process_limit(
    sandbox: Service, sandbox_limits: dict[str, str]
) -> None:
    # Each run's namespace init is reaped by the service: nothing accumulates against NPROC.
    for run in range(int(sandbox_limits["CHOREO_SANDBOX_MAX_PROCESSES"]) + 8):
        assert sandbox.run("print('again')").status == "ok", run


def test_non_zero_exit_is_an_error(sandbox: Service) -> None:
    result = sandbox.run("raise ValueError('bad input')")
    assert (result.status, result.exit_code) == ("error", 1)
    assert "ValueError: bad input" in result.stderr


def test_stdin_and_files_reach_the_code(sandbox: Service) -> None:
    code = "import sys, helper\nprint(helper.shout(sys.stdin.read()), open('data/n.txt').read())"
    result = sandbox.run(
        code,
        stdin="quiet",
        files={"helper.py": "def shout(s):\n    return s.upper()\n", "data/n.txt": "7"},
    )
    assert result.status == "ok", result.stderr
    assert result.stdout == "QUIET 7\n"


def test_output_is_bounded_and_marked_truncated(sandbox: Service) -> None:
    result = sandbox.run(
        "import sys\nsys.stdout.write('x' * 100_000)\nprint('tail', file=sys.stderr)"
    )
    assert result.status == "ok"
    assert result.stdout == "x" * 4096
    assert result.stdout_truncated
    assert (result.stderr, result.stderr_truncated) == ("tail\n", False)


def test_runs_as_an_unprivileged_user_in_its_own_namespaces(sandbox: Service) -> None:
    code = (
        "import os, socket\n"
        "print(os.getuid(), os.getgid(), socket.gethostname())\n"
        "print(sorted(k for k in os.environ))\n"
        "print(len([p for p in os.listdir('/proc') if p.isdigit()]))"
    )
    result = sandbox.run(code)
    uid_line, env_line, processes = result.stdout.splitlines()
    assert uid_line == "65534 65534 sandbox"
    # Nothing of the host's environment.
    assert env_line == "['HOME', 'LANG', 'PATH', 'PWD', 'TMPDIR']"
    assert int(processes) <= 3  # its own pid namespace: bubblewrap's init and the code


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"files": {"../escape.py": "x"}}, "bad file name"),
        ({"files": {"/etc/passwd": "x"}}, "bad file name"),
        ({"files": {"main.py": "x"}}, "reserved"),
        ({"timeout_s": 31.0}, "timeout_s may be at most 30"),
        ({"language": "ruby"}, "invalid run request"),
    ],
)
def test_malformed_requests_are_rejected(
    sandbox: Service, options: dict[str, object], message: str
) -> None:
    with pytest.raises(SandboxError, match=message):
        sandbox.run("print(1)", **options)


def test_health_and_metrics(sandbox: Service) -> None:
    health = sandbox.get("/healthz")
    assert health.status_code == 200
    assert health.json()["isolation"] is True
    sandbox.run("print(1)")
    metrics = sandbox.get("/metrics").text
    assert 'choreo_tool_runs_total{status="ok",tool="sandbox"}' in metrics


def test_tcp_listener_on_loopback() -> None:
    service = start_service(port=0)
    try:
        assert service.url is not None and service.url.startswith("http://127.0.0.1:")
        result = service.run("print('over tcp')")
        assert (result.status, result.stdout) == ("ok", "over tcp\n")
    finally:
        service.stop()
