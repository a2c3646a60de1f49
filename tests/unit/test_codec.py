"""Every wire record survives a round trip, and fields this version does not know survive too."""

from __future__ import annotations

import json

import msgspec
import pytest

from choreo.schemas import (
    RECORDS,
    SCHEMA_VERSION,
    DecodeError,
    Envelope,
    Task,
    decode,
    encode,
)
from tests.samples import SAMPLES


def test_every_record_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(RECORDS)
    assert all(type(SAMPLES[name]) is RECORDS[name] for name in RECORDS)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_round_trip(name: str) -> None:
    record = SAMPLES[name]
    assert decode(encode(record), RECORDS[name]) == record


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_unknown_top_level_fields_are_kept(name: str) -> None:
    body = msgspec.json.decode(encode(SAMPLES[name]))
    body["added_in_v2"] = {"nested": [1, "two"]}
    body["priority"] = 7

    record = decode(msgspec.json.encode(body), RECORDS[name])
    assert record.extensions == {"added_in_v2": {"nested": [1, "two"]}, "priority": 7}

    again = msgspec.json.decode(encode(record))
    assert again == body  # passed through this version, nothing lost or nested


def test_smallest_task_decodes() -> None:
    task = decode(b'{"input": "hi"}', Task)
    assert task.input == "hi" and task.trace_id is None and task.budget is None


def test_unknown_fields_survive_decode_then_encode() -> None:
    wire = {"input": "x", "priority": 3, "labels": ["a", {"b": None}], "x-origin": {"n": 1.5}}
    task = decode(json.dumps(wire).encode(), Task)
    assert task.extensions == {"priority": 3, "labels": ["a", {"b": None}], "x-origin": {"n": 1.5}}
    again = json.loads(encode(task))
    assert {k: again[k] for k in wire} == wire


def test_newer_schema_version_is_passed_on_unchanged() -> None:
    newer = dict(
        json.loads(encode(SAMPLES["Envelope"])), schema_version=SCHEMA_VERSION + 1, new_field="kept"
    )
    again = json.loads(encode(decode(json.dumps(newer).encode(), Envelope)))
    assert again == newer


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_schema_version_is_always_on_the_wire(name: str) -> None:
    assert json.loads(encode(SAMPLES[name]))["schema_version"] == SCHEMA_VERSION


def test_schema_version_is_added_when_the_producer_omits_it() -> None:
    added = json.loads(encode(decode(b'{"input": "x"}', Task)))
    assert added["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\xff\xfe\x00", "malformed"),
        (b"not json", "malformed"),
        (b"", "not a JSON object"),
        (b"[1, 2]", "got `array`"),
        (b'"input"', "got `str`"),
        (b'{"trace_id": "t-1"}', "`input`"),
        (b'{"input": 3}', "$.input"),
        (b'{"input": "x", "budget": {"max_hops": "many"}}', "$.budget.max_hops"),
    ],
    ids=["binary", "text", "empty", "array", "string", "missing-input", "int-input", "nested-type"],
)
def test_garbage_raises_decode_error_naming_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(data, Task)
    assert problem in str(caught.value)
