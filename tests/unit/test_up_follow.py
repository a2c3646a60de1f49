"""Which topic prefix a command takes from the ``choreo up`` running in its folder: the up's,
unless the command names its own prefix or another broker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from choreo.local import announce as local
from choreo.observe.settings import Settings

UP_BROKER = "127.0.0.1:19092"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder whose live ``choreo up`` (this test's own pid) runs under prefix ``acme``."""
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "CHOREO_BOOTSTRAP_SERVERS", "CHOREO_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    announce(pid=os.getpid(), prefix="acme")
    return tmp_path


def announce(*, pid: int, prefix: str) -> None:
    local.UP_FILE.parent.mkdir(exist_ok=True)
    local.UP_FILE.write_text(
        json.dumps({"pid": pid, "bootstrap": UP_BROKER, "mesh": "m.yaml", "topic_prefix": prefix})
    )


def test_a_command_with_no_broker_or_prefix_takes_the_ups(folder: Path) -> None:
    followed = local.follow(Settings())
    assert followed.topic_prefix == "acme"
    assert followed.bootstrap_servers is None  # the broker still comes from the up file


def test_naming_the_ups_broker_still_takes_its_prefix(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", UP_BROKER)
    assert local.follow(Settings()).topic_prefix == "acme"


def test_an_explicit_prefix_wins(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHOREO_TOPIC_PREFIX", "mine")
    assert local.follow(Settings()).topic_prefix == "mine"


def test_another_broker_keeps_the_default_prefix(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "10.0.0.7:9092")
    assert local.follow(Settings()).topic_prefix == "choreo"


def test_other_settings_from_the_environment_are_kept(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHOREO_FETCH_MAX_WAIT_MS", "7")
    followed = local.follow(Settings())
    assert (followed.topic_prefix, followed.fetch_max_wait_ms) == ("acme", 7)


@pytest.mark.parametrize("prefix", ["", "two words", "a/b"])
def test_an_announced_prefix_that_is_not_valid_is_not_followed(folder: Path, prefix: str) -> None:
    announce(pid=os.getpid(), prefix=prefix)
    assert local.follow(Settings()).topic_prefix == "choreo"


def test_a_stopped_ups_prefix_is_not_followed(folder: Path) -> None:
    announce(pid=2**22 + 1, prefix="acme")  # above any pid Linux hands out
    assert local.follow(Settings()).topic_prefix == "choreo"
