"""Working on a mesh started by ``choreo up``, from its folder, with the real ``choreo``: every
command finds the broker (and its topic prefix) the documented way, a join's arrivals are
shown with their authors, and a mesh that is not the one running is refused."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from choreo.kafka.broker import BrokerHandle
from tests.conftest import EXAMPLES
from tests.operator.support import Up, choreo, choreo_up, submitted_id, words

RESEARCH = EXAMPLES / "research" / "mesh.yaml"
RESEARCHERS = {"historian", "engineer", "economist"}


@pytest.fixture(scope="module")
def up(broker: BrokerHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """The research mesh (three researchers, a join, a synthesizer) under ``choreo up``."""
    folder = tmp_path_factory.mktemp("research-up")
    with choreo_up(
        RESEARCH,
        folder,
        broker.bootstrap,
        f"rj{os.getpid()}",
        "--no-watchdog",
        env={"CHOREO_LOG_FORMAT": "keyvalue"},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def joined(up: Up) -> str:
    """A completed trace of the research mesh, submitted from the folder with no broker set."""
    done = up.choreo("submit", str(RESEARCH), "Should batch jobs move to event streams?", "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    return submitted_id(done.stdout)


def test_up_announces_its_broker_in_its_folder(up: Up, broker: BrokerHandle) -> None:
    announced = json.loads((up.folder / ".choreo" / "up.json").read_text())
    assert announced["bootstrap"] == broker.bootstrap
    assert announced["mesh"] == str(RESEARCH.resolve())
    assert ".choreo/up.json" in up.log.read_text()
    assert f"export CHOREO_TOPIC_PREFIX={up.prefix}" in up.log.read_text()


def test_every_broker_command_finds_the_running_up(up: Up, joined: str) -> None:
    for command in (
        ("result", joined),
        ("trace", joined),
        ("state", joined),
        ("budget", joined),
        ("dlq",),
        ("escalations",),
    ):
        done = up.choreo(*command, "--json")
        assert done.returncode == 0, (command, done.stderr)
        json.loads(done.stdout)


def test_a_command_from_the_folder_takes_the_ups_topic_prefix(up: Up, joined: str) -> None:
    done = choreo("result", joined, "--json", cwd=up.folder)  # no broker, no prefix set
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"


def test_the_environment_comes_before_the_running_up(up: Up, joined: str) -> None:
    done = up.choreo("result", joined, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}, timeout=120)
    assert done.returncode == 1
    assert "no broker answers at 127.0.0.1:9" in words(done.stderr)


def test_without_a_broker_or_a_running_up_the_command_says_how_to_get_one(tmp_path: Path) -> None:
    for command in (
        ("submit", str(RESEARCH), "x"),
        ("result", "T"),
        ("trace", "T"),
        ("state", "T"),
        ("budget", "T"),
        ("dlq",),
    ):
        done = choreo(*command, cwd=tmp_path)
        assert done.returncode == 2, (command, done.stderr)
        message = words(done.stderr)
        assert "set KAFKA_BOOTSTRAP_SERVERS" in message and "choreo up" in message, message


def test_a_stale_announcement_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / ".choreo").mkdir()
    (tmp_path / ".choreo" / "up.json").write_text(
        json.dumps({"pid": 2**22 + 1, "bootstrap": "127.0.0.1:9"})
    )  # above any pid Linux hands out
    done = choreo("result", "T", cwd=tmp_path)
    assert done.returncode == 2 and "set KAFKA_BOOTSTRAP_SERVERS" in words(done.stderr)


def test_trace_shows_each_join_arrival(up: Up, joined: str) -> None:
    shown = up.choreo("trace", joined)
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if "join research" in line)
    assert "3 arrivals" in line
    assert set(line.split(": ", 1)[1].split(", ")) == RESEARCHERS
    trace = json.loads(up.choreo("trace", joined, "--json").stdout)
    assert sorted(trace["joins"]["research"]) == sorted(RESEARCHERS)
    fired = [h for h in trace["hops"] if h["agent"] == "synthesizer"]
    assert len(fired) == 1 and fired[0]["type"] == "trace.finish"


def test_state_credits_each_arrival_and_each_appender(up: Up, joined: str) -> None:
    rows = {
        cells[0]: cells
        for cells in (line.split("\t") for line in up.choreo("state", joined).stdout.splitlines())
    }
    assert set(rows["join.research"][3].split(", ")) == RESEARCHERS
    assert set(rows["findings"][3].split(", ")) == RESEARCHERS  # appended to by each
    assert rows["summary"][3] == "synthesizer"


def test_submit_refuses_a_mesh_whose_topics_exist_but_that_does_not_run(up: Up) -> None:
    other = EXAMPLES / "writer-editor" / "mesh.yaml"
    made = up.choreo("topics", "--mesh", str(other))  # its topics exist; none of its agents run
    assert made.returncode == 0, made.stderr
    # none will join: the wait for them is cut short
    done = up.choreo("submit", str(other), "hello", "--wait", "--join-timeout", "2")
    assert done.returncode == 1
    message = words(done.stderr)
    assert "mesh 'writer-editor' is not running under topic prefix" in message
    assert "no live consumer for agent writer, agent editor" in message
    assert "submitted" not in done.stdout


def test_a_halted_trace_shows_no_output_not_null(up: Up) -> None:
    done = up.choreo(
        "submit", str(RESEARCH), "Stop before the synthesis", "--max-hops", "3", "--wait"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"status\s+halted", done.stdout), done.stdout
    assert "(no output)" in done.stdout and "null" not in done.stdout
    assert "total: 3 steps," in done.stdout


def test_services_log_key_value_lines_with_the_trace_id(up: Up, joined: str) -> None:
    keeper = (up.folder / ".choreo" / "logs" / "keeper.log").read_text().splitlines()
    about = [line for line in keeper if f"trace_id={joined}" in line]
    assert [
        re.search(r'msg="([^"]*)"', line).group(1)
        for line in about  # type: ignore[union-attr]
    ] == ["trace admitted", "trace ended"], about
    assert all(line.startswith("ts=") and "service=keeper" in line for line in keeper), keeper


def test_a_long_field_is_cut_only_in_the_default_table(up: Up, joined: str) -> None:
    whole = up.choreo("state", joined, "--field", "summary").stdout.rstrip("\n")
    assert len(whole) > 80 and "\n" in whole  # the brief: several lines
    cut = {
        c[0]: c
        for c in (line.split("\t") for line in up.choreo("state", joined).stdout.splitlines())
    }["summary"][1]
    assert len(cut) == 80 and cut.endswith("…")
    full = {
        c[0]: c
        for c in (
            line.split("\t") for line in up.choreo("state", joined, "--full").stdout.splitlines()
        )
    }["summary"][1]
    assert full == " ".join(whole.split())  # uncut, on one line
    assert json.loads(up.choreo("state", joined, "--json").stdout)["fields"]["summary"] == whole
