"""The errors choreo.client.Client raises, each under ``ChoreoError`` and the builtin it stands
for, so ``except LookupError`` and ``except TimeoutError`` keep working.

::

    ChoreoError
    ├── TraceNotFound (LookupError)      no record of the trace where one was asked for
    │   └── VersionNotFound              the trace has no such state version
    ├── MeshNotRunning (LookupError)     the named mesh does not run under the prefix
    ├── EscalationError (LookupError)    no such escalation, or it is no longer open
    ├── DeadLetterNotFound (LookupError) no dead letter by that id
    └── ResultTimeout (TimeoutError)     no terminal record within the time waited

Light to import (no Kafka): the CLI and ``choreo.errors`` name these without loading the client.
"""

from __future__ import annotations

from choreo.schemas.errors import ChoreoError


class TraceNotFound(ChoreoError, LookupError):
    """No record of the trace where one was asked for (no snapshot, no outbox record, no hop or
    result record), or the topic to read does not exist; the message names which."""


class VersionNotFound(TraceNotFound):
    """The trace exists but has no state at the version asked for; the message gives the
    versions it has."""


class MeshNotRunning(ChoreoError, LookupError):
    """The named mesh does not run under the topic prefix on this broker: one of its topics is
    missing, or its keeper or an agent has no live consumer. The message names what is missing
    and how to start the mesh."""


class EscalationError(ChoreoError, LookupError):
    """The escalation does not exist or is no longer open (it can be resolved only once)."""


class DeadLetterNotFound(ChoreoError, LookupError):
    """No dead letter has the id asked for (ids are ``PARTITION:OFFSET`` on the dead-letter
    topic, as ``Client.dlq`` lists them)."""


class ResultTimeout(ChoreoError, TimeoutError):
    """The trace had no terminal record within the time waited; it may still be running, or
    may never have been admitted (``Client.state`` tells which)."""

    def __init__(self, trace_id: str, timeout_s: float) -> None:
        super().__init__(f"no terminal record of trace {trace_id!r} within {timeout_s:g} s")
        self.trace_id = trace_id
        self.timeout_s = timeout_s
