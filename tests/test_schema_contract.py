"""The published contract (schemas/json) matches the code, and the codec keeps its promises."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from schemas import (
    RECORDS,
    SCHEMA_VERSION,
    Budget,
    ControlVerdict,
    DeadLetter,
    DecodeError,
    Envelope,
    Escalation,
    FieldWrite,
    HopRecord,
    Record,
    Snapshot,
    StateConflict,
    Task,
    TerminalResult,
    Totals,
    Usage,
    decode,
    encode,
)
from schemas.export import ASYNCAPI_FILE, DEFAULT_OUT, render, stale, write
from services.runtime.topics import Topics

AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

#: One instance of every record, every optional part filled where it has a shape of its own.
SAMPLES: dict[str, Record] = {
    "Task": Task(input="write a haiku", trace_id="t-1", budget=Budget(max_hops=5, deadline=AT),
                 metadata={"user": "ada"}, initial_state={"topic": "rain"}),
    "Envelope": Envelope(event_id="e-1", trace_id="t-1", causation_id="e-0", type="draft.done",
                         source="writer", hop=2, state_version=3, state={"draft": "x"},
                         delta={"draft": "y"}, payload={"text": "y"},
                         usage=Usage(tokens_in=10, tokens_out=5, cost=0.01, model="small"),
                         created_at=AT),
    "Snapshot": Snapshot(trace_id="t-1", version=3, fields={"draft": "y"},
                         writes={"draft": FieldWrite(version=3, agent="writer")},
                         totals=Totals(tokens_in=10, hops=2), applied=["e-1"], admitted_at=AT,
                         updated_at=AT),
    "HopRecord": HopRecord(trace_id="t-1", event_id="e-1", agent="writer", hop=2,
                           type="draft.done", state_version=3, state_hash="h",
                           input_fingerprint="f", output="y", created_at=AT),
    "ControlVerdict": ControlVerdict(verdict_id="v-1", trace_id="t-1", action="persona_shift",
                                     reason="stuck", agent="writer", temperature=0.9,
                                     created_at=AT),
    "TerminalResult": TerminalResult(trace_id="t-1", status="completed", output="y",
                                     finished_at=AT),
    "Escalation": Escalation(escalation_id="x-1", trace_id="t-1", reason="cycle",
                             evidence={"agents": ["a", "b"]}, created_at=AT),
    "StateConflict": StateConflict(trace_id="t-1", field="draft", base_version=2, version=3,
                                   policy="last_writer_wins",
                                   kept=FieldWrite(version=3, agent="a"), kept_value="a",
                                   other=FieldWrite(version=3, agent="b"), other_value="b",
                                   created_at=AT),
    "DeadLetter": DeadLetter(topic="choreo.tasks", partition=0, offset=7, key="t-1",
                             reason="invalid Task", consumer="keeper", original=b"\xff{",
                             created_at=AT),
}


@cache
def published_schema(name: str) -> dict[str, Any]:
    return json.loads((DEFAULT_OUT / f"{name}.schema.json").read_text())


def errors(name: str, instance: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(published_schema(name))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(instance)]


def asyncapi_doc() -> dict[str, Any]:
    return yaml.safe_load((DEFAULT_OUT / ASYNCAPI_FILE).read_text())


# --- the published files are current ------------------------------------------------------

def test_published_files_are_current() -> None:
    outdated = stale(DEFAULT_OUT)
    assert not outdated, (
        f"schemas/json is stale ({', '.join(outdated)}): run `choreo schema export` "
        "and commit the result"
    )


def test_stale_names_missing_changed_and_extra_files(tmp_path: Path) -> None:
    written = write(tmp_path)
    assert sorted(p.name for p in written) == sorted(render())
    assert stale(tmp_path) == []
    (tmp_path / "Task.schema.json").unlink()
    (tmp_path / ASYNCAPI_FILE).write_text("asyncapi: 3.0.0\n")
    (tmp_path / "Retired.schema.json").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("not ours\n")
    assert stale(tmp_path) == ["Retired.schema.json", "Task.schema.json", ASYNCAPI_FILE]
    write(tmp_path)
    assert stale(tmp_path) == []
    assert (tmp_path / "notes.txt").exists()
    assert not (tmp_path / "Retired.schema.json").exists()


def test_render_does_not_depend_on_the_process() -> None:
    script = ("import hashlib, sys; from schemas.export import render; "
              "sys.stdout.write(hashlib.sha256(b''.join(render().values())).hexdigest())")
    digests = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": ""},
                       cwd=Path(__file__).parents[1]).stdout
        for seed in ("1", "2")
    }
    assert len(digests) == 1
    for name, content in render().items():
        assert content.endswith(b"\n") and b"\r" not in content, name


# --- JSON Schemas -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(RECORDS))
def test_every_published_schema_is_valid_and_accepts_its_encoded_record(name: str) -> None:
    schema = published_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["title"] == name
    assert schema["description"]
    assert "kept" in schema["additionalProperties"]["description"]
    assert errors(name, json.loads(encode(SAMPLES[name]))) == []


def test_smallest_task_validates() -> None:
    assert errors("Task", {"input": "x"}) == []


def test_full_terminal_result_validates() -> None:
    result = TerminalResult(
        trace_id="t-9", status="halted", output={"draft": "y", "score": [1, 2.5, None]},
        reason="cycle: writer met the same state twice", state_version=12,
        usage=Totals(tokens_in=1200, tokens_out=340, cost=0.0042, hops=9),
        parent_trace_id="t-8", finished_at=AT, extensions={"x-region": "eu"},
    )
    wire = json.loads(encode(result))
    assert set(TerminalResult.__struct_fields__) - {"extensions"} <= wire.keys()
    assert errors("TerminalResult", wire) == []


@pytest.mark.parametrize("task", [
    {},
    {"trace_id": "t-1"},
    {"input": 3},
    {"input": None},
    {"input": "x", "budget": {"max_hops": "many"}},
    {"input": "x", "metadata": ["not", "an", "object"]},
    {"input": "x", "schema_version": "one"},
], ids=["empty", "no-input", "int-input", "null-input", "bad-budget", "list-metadata",
        "str-version"])
def test_invalid_task_is_rejected_by_schema_and_decoder(task: dict[str, Any]) -> None:
    assert errors("Task", task), "the published schema accepted an invalid task"
    with pytest.raises(DecodeError):
        decode(json.dumps(task).encode(), Task)


def test_unknown_fields_are_allowed_by_the_schema() -> None:
    assert errors("Task", {"input": "x", "priority": 3, "labels": ["a"]}) == []


# --- AsyncAPI -----------------------------------------------------------------------------

EXPECTED_RECORDS = {
    "tasks": "Task", "outbox": "Envelope", "state": "Snapshot", "hops": "HopRecord",
    "control": "ControlVerdict", "results": "TerminalResult", "escalations": "Escalation",
    "conflicts": "StateConflict", "dlq": "DeadLetter",
}


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_asyncapi_document_is_3_0_and_refs_resolve() -> None:
    doc = asyncapi_doc()
    assert doc["asyncapi"] == "3.0.0"
    for channel_id, channel in doc["channels"].items():
        assert channel["messages"], channel_id
        for ref in channel["messages"].values():
            message = _resolve(doc, ref["$ref"])
            schema_file = DEFAULT_OUT / message["payload"]["$ref"]
            assert schema_file.is_file(), f"{channel_id}: {schema_file} does not exist"
            assert json.loads(schema_file.read_text())["title"] == message["name"]
    for op_id, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), op_id
        channel = _resolve(doc, op["channel"]["$ref"])
        for ref in op["messages"]:
            assert ref["$ref"].startswith(op["channel"]["$ref"] + "/messages/"), op_id
            _resolve(doc, ref["$ref"])
        for tag in op["tags"]:
            _resolve(doc, tag["$ref"])
        assert channel["address"], op_id


def test_asyncapi_maps_every_system_topic_to_its_record_and_key() -> None:
    doc = asyncapi_doc()
    topics = Topics("choreo")
    for channel_id, record in EXPECTED_RECORDS.items():
        channel = doc["channels"][channel_id]
        assert channel["address"] == getattr(topics, channel_id)
        assert list(channel["messages"]) == [record]
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(topics.system()) <= addresses
    agent = doc["channels"]["agentEvent"]
    assert agent["address"] == "choreo.events.{eventType}" and "eventType" in agent["parameters"]
    assert list(agent["messages"]) == ["Envelope"]
    messages = doc["components"]["messages"]
    trace_key = messages["Task"]["bindings"]["kafka"]["key"]
    assert "trace id" in trace_key["description"]
    assert all(m["bindings"]["kafka"]["key"] == trace_key
               for name, m in messages.items() if name != "DeadLetter")
    assert "original" in messages["DeadLetter"]["bindings"]["kafka"]["key"]["description"]


def test_every_channel_has_a_sender_and_a_receiver() -> None:
    doc = asyncapi_doc()
    seen: dict[str, set[str]] = {channel_id: set() for channel_id in doc["channels"]}
    for op in doc["operations"].values():
        seen[op["channel"]["$ref"].rsplit("/", 1)[1]].add(op["action"])
    assert {k: v for k, v in seen.items() if v != {"send", "receive"}} == {}


# --- the codec ----------------------------------------------------------------------------

def test_unknown_fields_survive_decode_then_encode() -> None:
    wire = {"input": "x", "priority": 3, "labels": ["a", {"b": None}], "x-origin": {"n": 1.5}}
    task = decode(json.dumps(wire).encode(), Task)
    assert task.extensions == {"priority": 3, "labels": ["a", {"b": None}],
                               "x-origin": {"n": 1.5}}
    again = json.loads(encode(task))
    assert {k: again[k] for k in wire} == wire


def test_newer_schema_version_is_passed_on_unchanged() -> None:
    newer = dict(json.loads(encode(SAMPLES["Envelope"])), schema_version=SCHEMA_VERSION + 1,
                 new_field="kept")
    again = json.loads(encode(decode(json.dumps(newer).encode(), Envelope)))
    assert again == newer


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_schema_version_is_always_on_the_wire(name: str) -> None:
    assert json.loads(encode(SAMPLES[name]))["schema_version"] == SCHEMA_VERSION


def test_schema_version_is_added_when_the_producer_omits_it() -> None:
    assert json.loads(encode(decode(b'{"input": "x"}', Task)))["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize(("data", "problem"), [
    (b"\xff\xfe\x00", "malformed"),
    (b"not json", "malformed"),
    (b"", "not a JSON object"),
    (b"[1, 2]", "got `array`"),
    (b'"input"', "got `str`"),
    (b'{"trace_id": "t-1"}', "`input`"),
    (b'{"input": 3}', "$.input"),
    (b'{"input": "x", "budget": {"max_hops": "many"}}', "$.budget.max_hops"),
], ids=["binary", "text", "empty", "array", "string", "missing-input", "int-input",
        "nested-type"])
def test_garbage_raises_decode_error_naming_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data, Task)
    assert problem in str(caught.value)
