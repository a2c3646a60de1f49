"""The Choreo Mesh wire contract: records, codec, deterministic ids and state reducers."""

from schemas.codec import DecodeError, decode, encode
from schemas.records import (
    RECORDS,
    SCHEMA_VERSION,
    Budget,
    ControlVerdict,
    DeadLetter,
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
)

__all__ = [
    "RECORDS",
    "SCHEMA_VERSION",
    "Budget",
    "ControlVerdict",
    "DeadLetter",
    "DecodeError",
    "Envelope",
    "Escalation",
    "FieldWrite",
    "HopRecord",
    "Record",
    "Snapshot",
    "StateConflict",
    "Task",
    "TerminalResult",
    "Totals",
    "Usage",
    "decode",
    "encode",
]
