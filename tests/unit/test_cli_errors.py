"""``choreo`` rejects bad input with exit code 2 and a message naming what to fix."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from choreo.kafka.broker import free_port
from tests.commands import CHOREO
from tests.conftest import REPO
from tests.unit.support import WRITER_EDITOR, minimal_mesh


def choreo(*args: str, bootstrap: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_BOOTSTRAP_SERVERS")
    }
    if bootstrap is not None:
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    return subprocess.run(
        [*CHOREO, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def _words(text: str) -> str:
    """The message with the terminal's line wrapping undone."""
    return " ".join(text.split())


def _closed_port() -> str:
    return f"127.0.0.1:{free_port()}"


def test_unknown_subcommand() -> None:
    done = choreo("frobnicate")
    assert done.returncode == 2
    assert "invalid choice: 'frobnicate'" in done.stderr
    assert "submit" in done.stderr  # the valid commands are listed


def test_run_agent_without_agent_lists_the_agents() -> None:
    done = choreo("run", "agent", "--mesh", str(WRITER_EDITOR), bootstrap=_closed_port())
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    message = _words(done.stderr)
    assert "--agent NAME is required" in message
    assert "writer, editor" in message


def test_run_agent_with_an_unknown_agent_lists_the_agents() -> None:
    done = choreo(
        "run", "agent", "--mesh", str(WRITER_EDITOR), "--agent", "critic", bootstrap=_closed_port()
    )
    assert "Traceback" not in done.stderr
    assert done.returncode == 2
    message = _words(done.stderr)
    assert "no agent 'critic'" in message and "writer, editor" in message


def test_run_agent_without_a_broker_address_says_to_set_it() -> None:
    done = choreo("run", "agent", "--mesh", str(WRITER_EDITOR), "--agent", "writer")
    assert done.returncode == 2
    assert "set KAFKA_BOOTSTRAP_SERVERS" in _words(done.stderr)


def test_submit_with_an_invalid_spec_names_the_field(tmp_path: Path) -> None:
    mesh = minimal_mesh()
    mesh["agents"][0]["model"] = "huge"
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh))
    done = choreo("submit", str(path), "hello", bootstrap=_closed_port())
    assert done.returncode == 2
    message = _words(done.stderr)
    assert "invalid mesh spec" in message
    assert f"{path}:" in message  # the file and line of the mistake
    assert "agents[worker].model: unknown model tier 'huge'" in message


def test_state_without_a_broker_address_says_to_set_it() -> None:
    done = choreo("state", "some-trace")
    assert done.returncode == 2
    assert "set KAFKA_BOOTSTRAP_SERVERS" in _words(done.stderr)


def test_negative_timeout_is_rejected_naming_the_option() -> None:
    done = choreo("submit", str(WRITER_EDITOR), "hello", "--timeout", "-1")
    assert done.returncode == 2
    assert "argument --timeout: must be > 0, got -1" in _words(done.stderr)


def test_unreachable_broker_is_an_error_not_a_traceback() -> None:
    address = _closed_port()
    done = choreo("topics", "--mesh", str(WRITER_EDITOR), bootstrap=address)
    assert "Traceback" not in done.stderr
    assert done.returncode == 1
    assert "error:" in done.stderr and address in _words(done.stderr)


def test_budgets_the_spec_would_reject_are_rejected_on_the_command_line() -> None:
    for option, value in (
        ("--max-hops", "-1"),
        ("--max-tokens", "0"),
        ("--max-cost", "-5"),
        ("--max-seconds", "0"),
        ("--max-hops", "2.5"),
    ):
        done = choreo(
            "submit", str(WRITER_EDITOR), "hello", option, value, bootstrap=_closed_port()
        )
        assert done.returncode == 2, (option, value)
        assert f"argument {option}:" in _words(done.stderr) and value in done.stderr


def test_a_bad_choreo_variable_is_one_clear_line() -> None:
    env = {**os.environ, "CHOREO_MAX_IN_FLIGHT": "lots", "CHOREO_LOG_LEVEL": "loud"}
    done = subprocess.run(
        [*CHOREO, "state", "t"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "CHOREO_MAX_IN_FLIGHT=lots" in done.stderr
    assert "CHOREO_LOG_LEVEL=LOUD" in done.stderr


def test_an_unreachable_broker_is_one_message_without_client_noise() -> None:
    address = _closed_port()
    done = choreo("state", "some-trace", bootstrap=address)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: no broker answers at {address} (check KAFKA_BOOTSTRAP_SERVERS and that the "
        "broker is running)"
    ]
