"""The spine end to end: the real broker, the keeper and the agents, the scripted model over
HTTP. (The command line reading this mesh: tests/processes/test_cli_reads.py.)"""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest
from kafka import KafkaProducer

from choreo.kafka.clients import read_topic
from choreo.keeper.replay import replay
from choreo.schemas import DeadLetter, decode
from choreo.schemas.deltas import StateLog
from choreo.schemas.ids import task_trace_id
from tests.conftest import RunningMesh, wait_until

pytestmark = pytest.mark.integration


def foreign_producer(mesh: RunningMesh) -> KafkaProducer:
    """A Kafka client this project does not use, as any other team would."""
    return KafkaProducer(bootstrap_servers=mesh.bootstrap, acks="all")


def test_the_editor_asks_for_two_revisions_then_the_draft_is_the_result(
    writer_editor: RunningMesh,
) -> None:
    trace_id = writer_editor.submit("Write about event-driven systems.")
    result = writer_editor.result(trace_id)
    assert result.status == "completed"
    assert "[draft 3]" in result.output
    assert result.usage.hops == 6  # writer, editor, writer, editor, writer, editor
    snapshot = writer_editor.snapshot(trace_id)
    assert snapshot.fields["revisions"] == 2
    assert snapshot.fields["review"].startswith("APPROVED")


def test_plain_json_from_a_foreign_client_gets_exactly_one_terminal_record(
    writer_editor: RunningMesh,
) -> None:
    producer = foreign_producer(writer_editor)
    keyed = f"foreign-{uuid.uuid4()}"
    producer.send(
        writer_editor.topics.tasks,
        key=keyed.encode(),
        value=json.dumps({"input": "keyed task"}).encode(),
    ).get(timeout=30)
    sent = producer.send(
        writer_editor.topics.tasks,
        value=json.dumps({"input": "task with no key and no id"}).encode(),
    )
    meta = sent.get(timeout=30)
    producer.close()
    keyless = task_trace_id(writer_editor.topics.tasks, meta.partition, meta.offset)

    for trace_id in (keyed, keyless):
        assert writer_editor.result(trace_id).status == "completed"
    barrier = writer_editor.submit("a later task, finished after both")
    writer_editor.result(barrier)
    for trace_id in (keyed, keyless):
        assert len(writer_editor.results(trace_id)) == 1


def _dead_letters(mesh: RunningMesh) -> list[DeadLetter]:
    records = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.dlq))
    return [decode(r.value, DeadLetter) for r in records if r.value]


def test_garbage_goes_to_the_dead_letter_topic_and_the_mesh_keeps_working(
    writer_editor: RunningMesh,
) -> None:
    producer = foreign_producer(writer_editor)
    not_json = b"\x00this is not json"
    not_a_task = json.dumps({"inptu": "typo in the field name"}).encode()
    not_an_event = b'{"event_id": 42}'
    producer.send(writer_editor.topics.tasks, key=b"junk-1", value=not_json).get(timeout=30)
    producer.send(writer_editor.topics.tasks, key=b"junk-2", value=not_a_task).get(timeout=30)
    producer.send(writer_editor.topics.event("draft.ready"), key=b"junk-3", value=not_an_event).get(
        timeout=30
    )
    producer.close()

    def parked() -> dict[bytes, DeadLetter] | None:
        letters = {d.original: d for d in _dead_letters(writer_editor)}
        wanted = (not_json, not_a_task, not_an_event)
        return letters if all(w in letters for w in wanted) else None

    letters = wait_until(parked, 60, message="three dead letters")
    assert "not a JSON object" in letters[not_json].reason
    assert "input" in letters[not_a_task].reason
    assert letters[not_a_task].topic == writer_editor.topics.tasks
    assert letters[not_an_event].topic == writer_editor.topics.event("draft.ready")
    assert letters[not_an_event].consumer == "agent:editor"

    later = writer_editor.submit("after the garbage")
    assert writer_editor.result(later).status == "completed"
    assert writer_editor.failed() == []


def test_replaying_the_outbox_rebuilds_every_live_snapshot_exactly(
    writer_editor: RunningMesh,
) -> None:
    trace_id = writer_editor.submit("replay me")
    writer_editor.result(trace_id)
    mesh = writer_editor
    outbox = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.outbox))
    rebuilt = replay(mesh.spec, mesh.topics, outbox)
    snapshots = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.state))
    live = StateLog.read(snapshots).latest()  # each newest snapshot, the deltas after it
    assert trace_id in live
    assert len(live) >= 1
    for tid, snapshot in live.items():
        assert msgspec.to_builtins(rebuilt.traces[tid]) == msgspec.to_builtins(snapshot), tid
