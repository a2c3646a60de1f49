"""Keys that are not UTF-8 are refused, and readers skip records they cannot read."""

from __future__ import annotations

import uuid

import pytest

from choreo.client import SyncClient
from choreo.schemas import Task, TerminalResult, encode
from tests.conftest import wait_until
from tests.liveness_keeper.support import LoneKeeper

pytestmark = pytest.mark.integration


def test_a_task_key_that_is_not_utf8_is_dead_lettered_not_admitted(lone_keeper: LoneKeeper) -> None:
    key = b"task-\xff\xfe-" + uuid.uuid4().hex.encode()
    lone_keeper.produce(lone_keeper.topics.tasks, encode(Task(input="odd key")), key)
    tail = key[-32:].decode()
    letters = wait_until(
        lambda: [
            d for d in lone_keeper.dead_letters() if d.key is not None and d.key.endswith(tail)
        ],
        90,
        message="the dead letter",
    )
    assert "not UTF-8" in letters[0].reason
    # nothing was admitted under a mangled id: no entry event carries these key bytes mangled
    mangled = key.decode("utf-8", "replace").encode()
    assert not [r for r in lone_keeper.read(lone_keeper.topics.outbox) if r.key == mangled]
    assert lone_keeper.running()


def test_a_reader_skips_a_record_it_cannot_decode_and_finds_the_result(
    lone_keeper: LoneKeeper,
) -> None:
    trace_id = f"reader-{uuid.uuid4()}"
    topic = lone_keeper.topics.results
    lone_keeper.produce(topic, b"\x00 not a result", trace_id.encode())
    lone_keeper.produce(
        topic,
        encode(TerminalResult(trace_id=trace_id, status="completed", output="found")),
        trace_id.encode(),
    )
    with SyncClient(lone_keeper.bootstrap, settings=lone_keeper.settings) as client:
        found = client.wait(trace_id, 60)
        assert found is not None and found.output == "found"
        typed = client.read(topic, trace_id, TerminalResult)
    assert [r.output for r in typed] == ["found"]
