"""Builders shared by the unit tests: a small valid mesh, step events, consumed records."""

from __future__ import annotations

import copy
from typing import Any

from aiokafka.structs import ConsumerRecord

from choreo.schemas import Budget, Envelope
from tests.conftest import EXAMPLES

WRITER_EDITOR = EXAMPLES / "writer-editor" / "mesh.yaml"

_MINIMAL: dict[str, Any] = {
    "name": "mini",
    "entry": ["work.requested"],
    "state": {"notes": {"reducer": "append"}, "count": {"reducer": "add", "default": 0}},
    "models": {"small": {"model": "m", "base_url": "http://127.0.0.1:9/v1"}},
    "agents": [
        {
            "name": "worker",
            "subscribe": ["work.requested"],
            "persona": "You work.",
            "model": "small",
            "routes": [{"emit": "work.done"}],
        },
        {
            "name": "checker",
            "subscribe": ["work.done"],
            "persona": "You check.",
            "model": "small",
            "routes": [
                {"when": "^OK", "finish": True, "output": "notes"},
                {"emit": "work.requested"},
            ],
        },
    ],
}


def minimal_mesh() -> dict[str, Any]:
    """A fresh copy of a small valid mesh, for a test to break in one place."""
    return copy.deepcopy(_MINIMAL)


def event(
    *,
    hop: int = 0,
    state: dict[str, Any] | None = None,
    event_id: str = "ev-1",
    budget: Budget | None = None,
    state_version: int = 1,
) -> Envelope:
    """An event as an agent receives it from the keeper."""
    return Envelope(
        event_id=event_id,
        trace_id="trace-1",
        type="work.requested",
        source="task",
        hop=hop,
        budget=budget or Budget(),
        state_version=state_version,
        state=state,
    )


def consumed(
    topic: str,
    offset: int,
    value: bytes,
    key: str | None = None,
    timestamp_ms: int = 1_700_000_000_000,
    partition: int = 0,
) -> ConsumerRecord[bytes, bytes]:
    """A record as a consumer hands it over, built from its parts."""
    key_bytes = key.encode() if key is not None else None
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp_ms,
        timestamp_type=0,
        key=key_bytes,
        value=value,
        checksum=None,
        serialized_key_size=len(key_bytes or b""),
        serialized_value_size=len(value),
        headers=(),
    )
