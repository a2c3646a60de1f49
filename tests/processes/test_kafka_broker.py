"""``choreo broker --kafka`` runs Apache Kafka from its jars and never leaves it behind."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from choreo.kafka.broker import EmbeddedBroker, broker_kind, kafka_home
from tests.commands import CHOREO
from tests.conftest import wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not any((kafka_home() / "libs").glob("kafka_2.13-*.jar")),
        reason="Apache Kafka's jars are not fetched (.ci/run fetches them; "
        "docs/TESTING.md says how)",
    ),
]


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc/*/stat)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_cli(tmp_path: Path) -> tuple[subprocess.Popen[str], str, int]:
    """``choreo broker --kafka`` in the background: the process, its address, the JVM's pid."""
    cli = subprocess.Popen(
        [*CHOREO, "broker", "--kafka", "--log", str(tmp_path / "kafka.log")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stderr is not None
    bootstrap = cli.stderr.readline().strip()  # the address alone, once it answers
    assert bootstrap.startswith("127.0.0.1:"), bootstrap + cli.stderr.read()
    [jvm] = children_of(cli.pid)
    return cli, bootstrap, jvm


def test_kafka_answers_as_apache_kafka_and_sigterm_stops_it_cleanly(tmp_path: Path) -> None:
    cli, bootstrap, jvm = start_cli(tmp_path)
    try:
        assert broker_kind(bootstrap) == "kafka"
    finally:
        cli.send_signal(signal.SIGTERM)
        out, _ = cli.communicate(timeout=60)
    assert cli.returncode == 0
    assert f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}" in out
    assert not alive(jvm)


def test_killing_the_cli_kills_the_broker_with_it(tmp_path: Path) -> None:
    cli, _, jvm = start_cli(tmp_path)
    os.kill(cli.pid, signal.SIGKILL)
    cli.communicate(timeout=10)
    wait_until(lambda: not alive(jvm), 30, message="the JVM to die with its parent")
    orphaned = [
        f
        for f in Path(tempfile.gettempdir()).glob("choreo-kafka-*")
        if (f / "owner.pid").is_file() and (f / "owner.pid").read_text() == str(cli.pid)
    ]
    assert orphaned, "the killed command's storage folder stays behind until the next start"
    cli, _, _ = start_cli(tmp_path)  # the next start removes it
    cli.send_signal(signal.SIGTERM)
    cli.communicate(timeout=60)
    assert not any(f.exists() for f in orphaned)


def test_the_embedded_broker_is_told_apart() -> None:
    broker = EmbeddedBroker().start()
    try:
        assert broker_kind(broker.bootstrap) == "embedded"
    finally:
        broker.stop()
