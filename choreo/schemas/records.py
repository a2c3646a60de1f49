"""Every record that travels on a Choreo Mesh topic.

The structs here *are* the wire contract: JSON on the wire, one ``schema_version`` per record,
and unknown fields kept in ``extensions`` so a newer producer never loses data by passing
through an older service (see :mod:`choreo.schemas.codec`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

SCHEMA_VERSION = 1

TraceStatus = Literal["running", "completed", "failed", "halted"]
TerminalStatus = Literal["completed", "failed", "halted"]


#: Event types with a meaning to the keeper; every other event type names an agent topic.
#: ``trace.admit``, ``trace.halt`` and ``trace.persona`` are written to the outbox by the keeper
#: itself, so the outbox alone is the ordered log of every transition of every trace.
ADMIT = "trace.admit"
HALT = "trace.halt"
PERSONA = "trace.persona"
FINISH = "trace.finish"
FAIL = "trace.fail"
STEP_REFUSED = "step.refused"
STEP_FAILED = "step.failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Record(msgspec.Struct, kw_only=True):
    """Base of every wire record: a schema version and a bag for unknown fields."""

    schema_version: int = SCHEMA_VERSION
    extensions: dict[str, Any] = msgspec.field(default_factory=dict)


#: Limits as the mesh spec's ``budgets`` bound them, so no task can ask for one it could not
#: (a negative limit would halt the trace at admission instead of reaching the DLQ).
Count = Annotated[int, msgspec.Meta(ge=1)]
Dollars = Annotated[float, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class Budget(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Hard limits of one trace. ``None`` means unlimited; ``deadline`` is set on admission.

    ``max_hops`` and ``max_tokens`` are at least 1, ``max_cost`` (US dollars) at least 0 and
    ``max_seconds`` above 0, as in the mesh spec; a task with another value is invalid and
    goes to the dead-letter topic.
    """

    max_hops: Count | None = None
    max_tokens: Count | None = None
    max_cost: Dollars | None = None
    max_seconds: Seconds | None = None
    deadline: datetime | None = None


class Usage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one step (or one model call) consumed."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    latency_ms: float = 0.0
    model: str | None = None
    calls: int = 0
    #: True when the endpoint sent no ``usage`` and the tokens are the client's estimate.
    estimated: bool = False
    #: Of ``tokens_in``: read from the provider's prompt cache, and written to it (Anthropic).
    tokens_cached: int = 0
    tokens_cache_write: int = 0
    #: Of ``tokens_out``: the model's hidden reasoning.
    tokens_reasoning: int = 0


class AgentTotals(msgspec.Struct, kw_only=True):
    """One agent's share of a trace's totals: what it cost, and in how many steps."""

    steps: int = 0
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0


class Allowance(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one step may still spend, granted by the keeper when it forwards the step's event.

    ``None`` means unlimited. The keeper reserves it against the trace's budget until the step
    is folded, so steps running at once (fan-out) never share the same remainder.
    """

    tokens: int | None = None
    cost: float | None = None


class Totals(msgspec.Struct, kw_only=True):
    """Running totals of a trace: exact, because the keeper adds each step exactly once."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    hops: int = 0
    by_agent: dict[str, AgentTotals] = msgspec.field(default_factory=dict)


class Task(Record, kw_only=True):
    """A unit of work submitted to ``choreo.tasks`` by any Kafka client.

    The smallest valid task is ``{"input": "..."}``. ``trace_id`` falls back to the record key,
    then to an id derived from the record's position, so re-reading the log yields the same id.
    """

    input: str
    trace_id: str | None = None
    budget: Budget | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    parent_trace_id: str | None = None
    initial_state: dict[str, Any] | None = None


class Persona(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An agent's persona override in one trace, from a ``persona_shift`` verdict."""

    temperature: float | None = None
    system_prompt: str | None = None
    reason: str | None = None


class ToolCallRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One tool call a model made during a step, as the hop record keeps it.

    ``args_sha256`` is the SHA-256 of the call's arguments as canonical JSON (sorted keys, no
    spaces): the same tool with the same arguments has the same hash in every trace, which is
    what loop detection compares. ``arguments`` and ``result`` are kept only when the agent
    runs with ``CHOREO_TRACE_CONTENT`` set.
    """

    name: str
    args_sha256: str
    status: Literal["ok", "error", "timeout", "invalid", "refused"] = "ok"
    latency_ms: float = 0.0
    result_chars: int = 0
    server: str | None = None
    arguments: str | None = None
    result: str | None = None


class Envelope(Record, kw_only=True):
    """One step event: what an agent produced (on the outbox) or receives (on its topic).

    On ``choreo.outbox``, ``state_version`` is the version the step read and ``delta`` what it
    changes. On an agent topic, the keeper has folded the delta: ``state`` is the new snapshot's
    fields and ``state_version`` its version.
    """

    event_id: str
    trace_id: str
    causation_id: str | None = None
    type: str
    source: str
    hop: int = 0
    budget: Budget = msgspec.field(default_factory=Budget)
    state_version: int = 0
    state: dict[str, Any] | None = None
    delta: dict[str, Any] | None = None
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    usage: Usage = msgspec.field(default_factory=Usage)
    created_at: datetime = msgspec.field(default_factory=utcnow)
    #: Persona overrides of this trace by agent name, set by the keeper when it forwards.
    personas: dict[str, Persona] = msgspec.field(default_factory=dict)
    #: What the receiving step may spend, set by the keeper when it forwards; a step's outbox
    #: records carry it back so the keeper can release the reservation.
    allowance: Allowance | None = None
    #: The trace's running totals when the keeper forwarded this event, so a step knows what
    #: is left of its token and cost budgets before it spends any.
    totals: Totals | None = None


class FieldWrite(msgspec.Struct, kw_only=True):
    """Who last wrote a state field, and at which version."""

    version: int
    agent: str


class Snapshot(Record, kw_only=True):
    """The folded state of one trace at one version, published to the compacted state topic."""

    trace_id: str
    version: int
    status: TraceStatus = "running"
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    writes: dict[str, FieldWrite] = msgspec.field(default_factory=dict)
    totals: Totals = msgspec.field(default_factory=Totals)
    budget: Budget = msgspec.field(default_factory=Budget)
    applied: list[str] = msgspec.field(default_factory=list)
    origin: str | None = None
    reason: str | None = None
    parent_trace_id: str | None = None
    admitted_at: datetime = msgspec.field(default_factory=utcnow)
    updated_at: datetime = msgspec.field(default_factory=utcnow)
    #: Persona overrides in force, by agent name (``trace.persona`` transitions).
    personas: dict[str, Persona] = msgspec.field(default_factory=dict)
    #: Allowances of steps forwarded and not folded yet, by ``<event id>/<agent>``.
    reserved: dict[str, Allowance] = msgspec.field(default_factory=dict)


class SetField(msgspec.Struct, tag="set", tag_field="op"):
    """A field's new value, whole."""

    value: Any


class ExtendField(msgspec.Struct, tag="extend", tag_field="op"):
    """Items added at the end of a list field (an ``append`` or ``extend`` write)."""

    items: list[Any]


class MergeField(msgspec.Struct, tag="merge", tag_field="op"):
    """Keys of an object field given new values (a ``merge`` write); the other keys stay."""

    entries: dict[str, Any]


#: How one field changed between two versions (choreo.schemas.deltas).
FieldChange = SetField | ExtendField | MergeField


class StateDelta(Record, kw_only=True):
    """What changed in one trace's state from ``base_version`` to ``version``: a record of the
    state log between two full snapshots, keyed ``<trace id>/<version>``.

    ``changes`` hold each changed field's new value, or only the items added to a list, or only
    the keys changed in an object, so a delta costs what changed, never the whole state;
    ``removed`` names fields gone. ``writes`` holds the changed entries of the snapshot's
    ``writes``, ``applied`` the event ids applied since ``base_version``; the other fields are
    the trace's head at ``version``, as in a :class:`Snapshot`. Folding needs no reducer and
    no mesh spec: any reader applies it (choreo.schemas.deltas.apply_delta).
    """

    trace_id: str
    base_version: int
    version: int
    status: TraceStatus = "running"
    changes: dict[str, FieldChange] = msgspec.field(default_factory=dict)
    removed: list[str] = msgspec.field(default_factory=list)
    writes: dict[str, FieldWrite] = msgspec.field(default_factory=dict)
    applied: list[str] = msgspec.field(default_factory=list)
    totals: Totals = msgspec.field(default_factory=Totals)
    budget: Budget = msgspec.field(default_factory=Budget)
    origin: str | None = None
    reason: str | None = None
    parent_trace_id: str | None = None
    admitted_at: datetime = msgspec.field(default_factory=utcnow)
    updated_at: datetime = msgspec.field(default_factory=utcnow)
    personas: dict[str, Persona] = msgspec.field(default_factory=dict)
    reserved: dict[str, Allowance] = msgspec.field(default_factory=dict)


class HopRecord(Record, kw_only=True):
    """One record per applied step, with the trace's running totals after it.

    ``field_hashes`` hash each state field's value after the step with numbers, ids and
    timestamps normalised away; ``situation`` hashes, the same way, the fields the agent reads
    as they were before the step. The watchdog's progress-aware rules use them
    (docs/WATCHDOG.md).
    """

    trace_id: str
    event_id: str
    causation_id: str | None = None
    agent: str
    hop: int
    type: str
    status: Literal["ok", "failed", "refused"] = "ok"
    state_version: int
    state_hash: str
    input_fingerprint: str
    output: str = ""
    duration_ms: float = 0.0
    usage: Usage = msgspec.field(default_factory=Usage)
    totals: Totals = msgspec.field(default_factory=Totals)
    conflicts: int = 0
    created_at: datetime = msgspec.field(default_factory=utcnow)
    field_hashes: dict[str, str] = msgspec.field(default_factory=dict)
    situation: str = ""
    #: The state version the step read (``state_version`` is the one it produced).
    read_version: int = 0
    #: The tool calls the step's model made, in the order they were asked for.
    tool_calls: list[ToolCallRecord] = msgspec.field(default_factory=list)


class ControlVerdict(Record, kw_only=True):
    """An instruction to the mesh about one trace: halt it, or shift an agent's persona."""

    verdict_id: str
    trace_id: str
    action: Literal["halt", "persona_shift"]
    reason: str
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    agent: str | None = None
    temperature: float | None = None
    system_prompt: str | None = None
    source: str = "operator"
    created_at: datetime = msgspec.field(default_factory=utcnow)


class TerminalResult(Record, kw_only=True):
    """The one and only terminal record of a trace, on ``choreo.results``."""

    trace_id: str
    status: TerminalStatus
    output: Any = None
    reason: str | None = None
    state_version: int = 0
    usage: Totals = msgspec.field(default_factory=Totals)
    parent_trace_id: str | None = None
    finished_at: datetime = msgspec.field(default_factory=utcnow)


class Escalation(Record, kw_only=True):
    """A halted trace handed to a human, with the evidence that stopped it."""

    escalation_id: str
    trace_id: str
    reason: str
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    state_version: int = 0
    status: Literal["open", "resumed", "closed"] = "open"
    guidance: str | None = None
    continuation_trace_id: str | None = None
    created_at: datetime = msgspec.field(default_factory=utcnow)


class StateConflict(Record, kw_only=True):
    """Two steps built on the same version both wrote one ``replace`` field."""

    trace_id: str
    field: str
    base_version: int
    version: int
    policy: Literal["last_writer_wins", "first_writer_wins", "reject"]
    kept: FieldWrite
    kept_value: Any = None
    other: FieldWrite
    other_value: Any = None
    created_at: datetime = msgspec.field(default_factory=utcnow)


class DeadLetter(Record, kw_only=True):
    """A record a consumer could not accept: where it came from, why, and its exact bytes."""

    topic: str
    partition: int
    offset: int
    key: str | None = None
    reason: str
    consumer: str
    original: bytes
    created_at: datetime = msgspec.field(default_factory=utcnow)


#: Every record type by the name used in the JSON Schema export and the AsyncAPI document.
RECORDS: dict[str, type[Record]] = {
    "Task": Task,
    "Envelope": Envelope,
    "Snapshot": Snapshot,
    "StateDelta": StateDelta,
    "HopRecord": HopRecord,
    "ControlVerdict": ControlVerdict,
    "TerminalResult": TerminalResult,
    "Escalation": Escalation,
    "StateConflict": StateConflict,
    "DeadLetter": DeadLetter,
}
