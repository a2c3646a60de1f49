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

from choreo.schemas import (
    RECORDS,
    DecodeError,
    Task,
    TerminalResult,
    Totals,
    decode,
    encode,
)
from choreo.schemas.export import ASYNCAPI_FILE, DEFAULT_OUT, render, stale, write
from choreo.schemas.topics import Topics
from tests.conftest import REPO
from tests.samples import SAMPLES

PUBLISHED = REPO / DEFAULT_OUT

AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@cache
def published_schema(name: str) -> dict[str, Any]:
    return json.loads((PUBLISHED / f"{name}.schema.json").read_text())


def errors(name: str, instance: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(published_schema(name))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def asyncapi_doc() -> dict[str, Any]:
    return yaml.safe_load((PUBLISHED / ASYNCAPI_FILE).read_text())


# --- the published files are current ------------------------------------------------------


def test_published_files_are_current() -> None:
    outdated = stale(PUBLISHED)
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
    script = (
        "import hashlib, sys; from choreo.schemas.export import render; "
        "sys.stdout.write(hashlib.sha256(b''.join(render().values())).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=Path(__file__).parents[1],
        ).stdout
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
        trace_id="t-9",
        status="halted",
        output={"draft": "y", "score": [1, 2.5, None]},
        reason="cycle: writer met the same state twice",
        state_version=12,
        usage=Totals(tokens_in=1200, tokens_out=340, cost=0.0042, hops=9),
        parent_trace_id="t-8",
        finished_at=AT,
        extensions={"x-region": "eu"},
    )
    wire = json.loads(encode(result))
    assert set(TerminalResult.__struct_fields__) - {"extensions"} <= wire.keys()
    assert errors("TerminalResult", wire) == []


@pytest.mark.parametrize(
    "task",
    [
        {},
        {"trace_id": "t-1"},
        {"input": 3},
        {"input": None},
        {"input": "x", "budget": {"max_hops": "many"}},
        {"input": "x", "budget": {"max_hops": -3}},
        {"input": "x", "budget": {"max_tokens": 0}},
        {"input": "x", "budget": {"max_cost": -0.5}},
        {"input": "x", "budget": {"max_seconds": 0}},
        {"input": "x", "metadata": ["not", "an", "object"]},
        {"input": "x", "schema_version": "one"},
    ],
    ids=[
        "empty",
        "no-input",
        "int-input",
        "null-input",
        "bad-budget",
        "negative-hops",
        "zero-tokens",
        "negative-cost",
        "zero-seconds",
        "list-metadata",
        "str-version",
    ],
)
def test_invalid_task_is_rejected_by_schema_and_decoder(task: dict[str, Any]) -> None:
    assert errors("Task", task), "the published schema accepted an invalid task"
    with pytest.raises(DecodeError):
        decode(json.dumps(task).encode(), Task)


def test_unknown_fields_are_allowed_by_the_schema() -> None:
    assert errors("Task", {"input": "x", "priority": 3, "labels": ["a"]}) == []


# --- AsyncAPI -----------------------------------------------------------------------------

EXPECTED_RECORDS = {
    "tasks": ["Task"],
    "outbox": ["Envelope"],
    "state": ["Snapshot", "StateDelta"],
    "blobs": ["BlobChunk"],
    "hops": ["HopRecord"],
    "control": ["ControlVerdict"],
    "results": ["TerminalResult"],
    "escalations": ["Escalation"],
    "conflicts": ["StateConflict"],
    "dlq": ["DeadLetter"],
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
            if message["contentType"] != "application/json":  # the blob topic's raw chunks
                assert message["payload"]["type"] == "string", channel_id
                continue
            schema_file = PUBLISHED / message["payload"]["$ref"]
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
    for channel_id, records in EXPECTED_RECORDS.items():
        channel = doc["channels"][channel_id]
        assert channel["address"] == getattr(topics, channel_id)
        assert list(channel["messages"]) == records
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(topics.system()) <= addresses
    agent = doc["channels"]["agentEvent"]
    assert agent["address"] == "choreo.events.{eventType}" and "eventType" in agent["parameters"]
    assert list(agent["messages"]) == ["Envelope"]
    messages = doc["components"]["messages"]
    trace_key = messages["Task"]["bindings"]["kafka"]["key"]
    assert "trace id" in trace_key["description"]
    assert all(
        m["bindings"]["kafka"]["key"] == trace_key
        for name, m in messages.items()
        if name not in ("DeadLetter", "StateDelta", "BlobChunk")
    )
    assert "SHA-256" in messages["BlobChunk"]["bindings"]["kafka"]["key"]["description"]
    assert (
        "<trace id>/<version>" in messages["StateDelta"]["bindings"]["kafka"]["key"]["description"]
    )
    assert "original" in messages["DeadLetter"]["bindings"]["kafka"]["key"]["description"]


def test_every_channel_has_a_sender_and_a_receiver() -> None:
    doc = asyncapi_doc()
    seen: dict[str, set[str]] = {channel_id: set() for channel_id in doc["channels"]}
    for op in doc["operations"].values():
        seen[op["channel"]["$ref"].rsplit("/", 1)[1]].add(op["action"])
    assert {k: v for k, v in seen.items() if v != {"send", "receive"}} == {}
