"""Deterministic identifiers.

Delivery is at-least-once, so a step may run twice. Deriving a step's ``event_id`` from its
cause, its agent and its output index makes the rerun produce the *same* id, and the keeper's
dedupe turns at-least-once delivery into exactly-once state changes.
"""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = uuid.UUID("6f1c3e0a-5b7d-4c39-9a51-7c0f5e2b8d14")


def new_id() -> str:
    """A fresh random id, for things that are not derived from another event."""
    return str(uuid.uuid4())


def derive_event_id(cause_id: str, agent: str, index: int = 0) -> str:
    """The id of output ``index`` of ``agent``'s step on event ``cause_id``."""
    return str(uuid.uuid5(_NAMESPACE, f"{cause_id}/{agent}/{index}"))


def task_trace_id(topic: str, partition: int, offset: int) -> str:
    """The trace id of a task that named none: stable under replay of the same log."""
    return str(uuid.uuid5(_NAMESPACE, f"task/{topic}/{partition}/{offset}"))


def fingerprint(data: bytes) -> str:
    """A short content hash, for state and input fingerprints in hop records."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()
