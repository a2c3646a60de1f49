"""What choreo.client.Client returns beyond the wire records: small frozen dataclasses over the
msgspec records of choreo.schemas, so every answer is typed.

Light to import (no Kafka): these are plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from choreo.budget.left import BudgetLeft
from choreo.schemas import (
    Budget,
    ControlVerdict,
    DeadLetter,
    Envelope,
    Escalation,
    HopRecord,
    Snapshot,
    StateConflict,
    TerminalResult,
    Totals,
)

if TYPE_CHECKING:
    from choreo.keeper.replay import Comparison


@dataclass(frozen=True)
class Submission:
    """Where a submitted task landed. The keeper names this place as the trace's origin, which
    is how ``Client.admission`` tells this task's fate from that of another task sent with the
    same trace id."""

    trace_id: str
    topic: str
    partition: int
    offset: int

    @property
    def origin(self) -> str:
        """``topic/partition/offset``, as the keeper writes it in the admitted snapshot."""
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class Admission:
    """What the keeper did with one submission: ``admitted``, ``dead-lettered`` (``reason`` is
    the keeper's, e.g. the trace id was already admitted) or ``unknown`` (no word within the
    time asked)."""

    status: Literal["admitted", "dead-lettered", "unknown"]
    reason: str | None = None


@dataclass(frozen=True)
class Trace:
    """Everything the mesh wrote about one trace, each list in log order (what ``choreo trace``
    shows, and more).

    ``hops``: one record per step the keeper folded; ``steps``: every step record agents wrote
    to the outbox, folded or not; ``results``: terminal records (exactly one once it ended);
    ``verdicts``: the watchdog's and operators' halts and persona shifts; ``conflicts``: state
    conflicts and how their policy settled them; ``escalations``: every record of its
    escalations (an escalation's latest record is its state); ``snapshots``: every full
    snapshot on the state topic, ``snapshot`` the newest state: the newest snapshot with the
    deltas after it folded (choreo.schemas.deltas; ``None`` before admission).
    """

    trace_id: str
    hops: list[HopRecord]
    steps: list[Envelope]
    results: list[TerminalResult]
    verdicts: list[ControlVerdict]
    conflicts: list[StateConflict]
    escalations: list[Escalation]
    snapshots: list[Snapshot]
    snapshot: Snapshot | None

    @property
    def result(self) -> TerminalResult | None:
        """The terminal record, or ``None`` while the trace runs."""
        return self.results[0] if self.results else None

    @property
    def status(self) -> str:
        """``completed``, ``failed`` or ``halted`` once ended, else ``running``."""
        return self.result.status if self.result is not None else "running"

    @property
    def joins(self) -> dict[str, list[str]]:
        """Each join's arrivals, in arrival order, from the newest snapshot (a join's field
        outlives the trace's end)."""
        fields = self.snapshot.fields if self.snapshot is not None else {}
        return {
            name.removeprefix("join."): [str(a) for a in value]
            for name, value in fields.items()
            if name.startswith("join.") and isinstance(value, list)
        }


@dataclass(frozen=True)
class TraceBudget:
    """A trace's budget and what it has used, from its newest snapshot.

    ``budget``: the limits (``None`` is unlimited; cost in US dollars, seconds of wall clock
    from admission); ``used``: its totals (steps, tokens in and out, cost, per agent);
    ``elapsed_s``: seconds from admission to the snapshot.
    """

    trace_id: str
    status: str
    version: int
    budget: Budget
    used: Totals
    elapsed_s: float

    @property
    def left(self) -> BudgetLeft:
        """What is left of each limit, never below zero; ``None`` where there is no limit.
        ``hops`` counts steps, ``tokens`` input plus output tokens."""

        def rest(limit: float | None, used: float) -> float | None:
            return None if limit is None else max(0, limit - used)

        hops = rest(self.budget.max_hops, self.used.hops)
        tokens = rest(self.budget.max_tokens, self.used.tokens_in + self.used.tokens_out)
        return BudgetLeft(
            hops=None if hops is None else int(hops),
            tokens=None if tokens is None else int(tokens),
            cost=rest(self.budget.max_cost, self.used.cost),
            seconds=rest(self.budget.max_seconds, self.elapsed_s),
        )


@dataclass(frozen=True)
class DeadLetterEntry:
    """A record the mesh refused. ``id`` is its place on the dead-letter topic,
    ``PARTITION:OFFSET``; ``letter`` holds where it came from, who refused it, why, and its
    exact bytes."""

    id: str
    letter: DeadLetter


@dataclass(frozen=True)
class Replay:
    """Every trace rebuilt from the outbox beside its live snapshot: ``records`` outbox records
    replayed; one comparison per trace, whose ``differences`` are empty when replay and live
    agree."""

    records: int
    comparisons: list[Comparison]

    @property
    def differing(self) -> list[Comparison]:
        """The traces whose rebuilt state differs from the live one (none, ideally)."""
        return [c for c in self.comparisons if c.differences]


@dataclass(frozen=True)
class TraceSummary:
    """One trace at a glance, from its newest snapshot and its terminal record: what the
    console's traces page and ``choreo traces`` list.

    ``status``: ``running``, ``completed``, ``failed`` or ``halted``; ``admitted_at`` and
    ``updated_at``: UTC; ``tokens``: input plus output tokens; ``cost``: US dollars;
    ``last_agent``: the agent that wrote the newest version (``None`` before any step);
    ``reason``: why it failed or halted.
    """

    trace_id: str
    status: str
    admitted_at: datetime
    updated_at: datetime
    hops: int
    tokens: int
    cost: float
    last_agent: str | None
    reason: str | None
    parent_trace_id: str | None = None
    agents: tuple[str, ...] = ()


@dataclass(frozen=True)
class TracePage:
    """One page of traces, newest first, and how many traces matched the filter in all."""

    traces: list[TraceSummary]
    total: int
    offset: int

    @classmethod
    def of(
        cls,
        traces: list[TraceSummary],
        *,
        status: str | None = None,
        agent: str | None = None,
        text: str | None = None,
        offset: int = 0,
        limit: int | None = 50,
    ) -> TracePage:
        """The page of ``traces`` that match every filter given, from ``offset``, at most
        ``limit`` (``None``: all). ``status`` matches exactly; ``agent``: an agent that took
        a step; ``text``: part of the trace id, the last agent or the reason, in any case."""
        needle = (text or "").casefold()
        matched = [
            t
            for t in traces
            if (status is None or t.status == status)
            and (agent is None or agent in t.agents)
            and (
                not needle
                or any(needle in (v or "").casefold() for v in (t.trace_id, t.last_agent, t.reason))
            )
        ]
        end = None if limit is None else offset + limit
        return cls(traces=matched[offset:end], total=len(matched), offset=offset)


@dataclass(frozen=True)
class AgentGroup:
    """An agent of a running mesh: its consumer group, the event types it subscribes to, how
    many replicas are live in the group now (members), and its lag (offsets on its topics it
    has not yet committed, summed over partitions). On Apache Kafka a transaction's commit
    marker takes an offset, so a group that has read everything may show up to one a
    partition written transactionally."""

    agent: str
    group: str
    subscribes: tuple[str, ...]
    replicas: int
    lag: int
