"""The watchdog's rules: pure functions over one trace's detector state.

Nothing here does I/O or reads a clock, so every rule is replayable from the hop log and
testable with literal records. Each rule returns :class:`Evidence` (what matched, at which hops,
with which numbers) or ``None``; the policy in :mod:`choreo.watchdog.policy` turns evidence
into verdicts.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import msgspec

from choreo.schemas import Budget, Totals
from choreo.schemas.ids import fingerprint


class Evidence(msgspec.Struct, kw_only=True):
    """Why a rule fired: the rule, the agent it is about, the hops involved and the numbers."""

    rule: str
    agent: str | None = None
    hops: list[int] = msgspec.field(default_factory=list)
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class Step(msgspec.Struct, array_like=True):
    """What the ping-pong rule remembers of one recent hop."""

    hop: int
    agent: str
    state_hash: str


class Match(msgspec.Struct, array_like=True):
    """One stalled output of an agent that matched one of its recent outputs."""

    hop: int
    similarity: float


class Seen(msgspec.Struct, array_like=True):
    """A hop and a hash it produced (a state shape, a tool call)."""

    hop: int
    key: str


class AgentWatch(msgspec.Struct, kw_only=True):
    """Per agent in a trace: its recent outputs (normalised) and their fingerprints, the
    situations it met, its run of stalled matching outputs, its shift."""

    outputs: list[str] = msgspec.field(default_factory=list)
    exact: list[str] = msgspec.field(default_factory=list)
    situations: list[str] = msgspec.field(default_factory=list)
    streak: list[Match] = msgspec.field(default_factory=list)
    shifted_at: int | None = None
    #: The state version at which the keeper applied the shift (from the trace's snapshots).
    shift_version: int | None = None
    evidence_after_shift: list[int] = msgspec.field(default_factory=list)


class TraceWatch(msgspec.Struct, kw_only=True):
    """Everything the watchdog keeps about one trace; one JSON value in the faust table.

    ``budget`` and ``admitted_at`` come from the trace's snapshots when one has been seen;
    until then the mesh defaults apply from the first hop record's time.
    """

    trace_id: str
    budget: Budget | None = None
    admitted_at: datetime | None = None
    first_seen_at: datetime | None = None
    totals: Totals = msgspec.field(default_factory=Totals)
    last_at: datetime | None = None
    state_version: int = 0
    #: The highest state version of a hop record seen: the keeper writes a trace's hop
    #: records in version order, so one at or below it is a redelivery.
    hop_version: int = 0
    #: The ids of the last hop records seen (a bounded window, see ``KEPT``).
    event_ids: list[str] = msgspec.field(default_factory=list)
    #: Where each agent met each (input, state) pair, for the last ``KEPT`` pairs met.
    meetings: dict[str, int] = msgspec.field(default_factory=dict)
    recent: list[Step] = msgspec.field(default_factory=list)
    agents: dict[str, AgentWatch] = msgspec.field(default_factory=dict)
    #: Per state field, the value shapes it has had (for "did this hop bring anything new").
    values: dict[str, list[str]] = msgspec.field(default_factory=dict)
    #: Recent whole-state shapes, and the hops at which the state went back to one of them.
    shapes: list[Seen] = msgspec.field(default_factory=list)
    revisits: list[Seen] = msgspec.field(default_factory=list)
    #: The trace's last ``KEPT`` tool calls, keyed ``name|args_sha256``.
    tool_calls: list[Seen] = msgspec.field(default_factory=list)
    verdicts: list[str] = msgspec.field(default_factory=list)
    halted: bool = False
    finished: bool = False


#: How much history of one trace each rule keeps: a trace's watch (a value of the watchdog's
#: table, written back on every hop) and the work per hop stay bounded however long the trace
#: runs. A cycle or a repeated tool call further apart than this goes unseen by its rule; the
#: trace's budgets still bound it.
KEPT = 256


def remember(window: list[Any], items: list[Any]) -> None:
    """Add ``items`` to ``window``, keeping its last :data:`KEPT` items."""
    window += items
    del window[:-KEPT]


def meet(meetings: dict[str, int], key: str, hop: int) -> None:
    """Note where a meeting first happened, keeping the last :data:`KEPT` meetings (a dict
    keeps insertion order: the oldest goes first)."""
    meetings.setdefault(key, hop)
    while len(meetings) > KEPT:
        del meetings[next(iter(meetings))]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(TraceWatch)


def dump_watch(watch: TraceWatch) -> bytes:
    return _encoder.encode(watch)


def load_watch(data: bytes) -> TraceWatch:
    return _decoder.decode(data)


# -- similarity ------------------------------------------------------------------------------


def ngrams(text: str, n: int = 3) -> Counter[str]:
    """Character n-gram counts; a text shorter than ``n`` is its own single gram."""
    if len(text) < n:
        return Counter([text]) if text else Counter()
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def cosine(a: str, b: str, n: int = 3) -> float:
    """Cosine similarity of the n-gram count vectors of ``a`` and ``b``; 0.0 if either is empty.

    The norm is ``sqrt(|a|²·|b|²)`` over integer counts, so identical texts score exactly 1.0.
    """
    va, vb = ngrams(a, n), ngrams(b, n)
    if not va or not vb:
        return 0.0
    dot = sum(count * vb[gram] for gram, count in va.items())
    norms = sum(c * c for c in va.values()) * sum(c * c for c in vb.values())
    return dot / math.sqrt(norms)


def best_match(text: str, earlier: list[str], n: int = 3) -> float:
    """The highest cosine similarity of ``text`` to any of ``earlier`` (0.0 if none)."""
    return max((cosine(text, other, n) for other in earlier), default=0.0)


# -- loop rules ------------------------------------------------------------------------------


def meeting_key(agent: str, input_fingerprint: str, state_hash: str) -> str:
    return f"{agent}|{input_fingerprint}|{state_hash}"


def cycle(
    meetings: dict[str, int], agent: str, hop: int, input_fingerprint: str, state_hash: str
) -> Evidence | None:
    """The agent met this input and produced this state before, at an earlier hop."""
    first = meetings.get(meeting_key(agent, input_fingerprint, state_hash))
    if first is None or first == hop:
        return None
    return Evidence(
        rule="cycle",
        agent=agent,
        hops=[first, hop],
        details={"input_fingerprint": input_fingerprint, "state_hash": state_hash},
    )


def ping_pong(recent: list[Step], rounds: int) -> Evidence | None:
    """The last ``rounds`` A→B rounds alternate two agents and after the first round no hop
    reaches a state the first round did not already reach: the pair is going nowhere."""
    window = recent[-2 * rounds :]
    if len(window) < 2 * rounds:
        return None
    pair = (window[0].agent, window[1].agent)
    if pair[0] == pair[1] or any(s.agent != pair[i % 2] for i, s in enumerate(window)):
        return None
    reached = {window[0].state_hash, window[1].state_hash}
    if any(s.state_hash not in reached for s in window[2:]):
        return None
    return Evidence(
        rule="ping_pong",
        agent=window[-1].agent,
        hops=[s.hop for s in window],
        details={"agents": list(pair), "rounds": rounds, "state_hashes": sorted(reached)},
    )


def stuck(agent: str, streak: list[Match], repeats: int, threshold: float) -> Evidence | None:
    """The agent's last ``repeats`` outputs each matched one of its recent outputs while the
    trace made no progress (streak kept by the caller, see ``Watchdog._stuck``)."""
    if len(streak) < repeats:
        return None
    recent = streak[-repeats:]
    return Evidence(
        rule="stuck",
        agent=agent,
        hops=[m.hop for m in recent],
        details={"similarities": [round(m.similarity, 6) for m in recent], "threshold": threshold},
    )


def state_shape(field_hashes: dict[str, str]) -> str:
    """One hash of a whole state's shape (field names and their value shapes)."""
    return fingerprint("\n".join(f"{k}={v}" for k, v in sorted(field_hashes.items())).encode())


def revisit(
    shapes: list[Seen], revisits: list[Seen], agent: str, hop: int, shape: str, repeats: int
) -> Evidence | None:
    """The state went back, ``repeats`` times within the window, to a shape it had left.

    ``shapes`` holds the window's earlier state shapes, oldest first; a hop whose shape equals
    the one just before it did not move (that is the stuck rule's business), one that equals
    an older one went back. ``revisits`` collects those hops; the caller trims both windows.
    """
    if not shapes or shapes[-1].key == shape:
        return None
    earlier = next((s for s in reversed(shapes[:-1]) if s.key == shape), None)
    if earlier is None:
        return None
    revisits.append(Seen(hop, shape))
    if len(revisits) < repeats:
        return None
    return Evidence(
        rule="revisit",
        agent=agent,
        hops=[r.hop for r in revisits[-repeats:]],
        details={"back_to_hop": earlier.hop, "shape": shape, "cycle_length": hop - earlier.hop},
    )


def tool_repeat(calls: list[Seen], agent: str, hop: int, repeats: int) -> Evidence | None:
    """A tool call (same tool, same arguments) made for the ``repeats``-th time among the
    trace's recent ``calls``, which already hold this hop's calls."""
    mine = {c.key for c in calls if c.hop == hop}
    for key in sorted(mine):
        hops = sorted({c.hop for c in calls if c.key == key})
        if len(hops) >= repeats:
            name, _, args_hash = key.partition("|")
            return Evidence(
                rule="tool_repeat",
                agent=agent,
                hops=hops[-repeats:],
                details={"tool": name, "args_sha256": args_hash, "calls": len(hops)},
            )
    return None


# -- budgets ---------------------------------------------------------------------------------


def deadline_of(budget: Budget, started_at: datetime | None) -> datetime | None:
    """The trace's wall-clock deadline: the admission-set one, else start + ``max_seconds``."""
    if budget.deadline is not None:
        return budget.deadline
    if budget.max_seconds is None or started_at is None:
        return None
    return started_at + timedelta(seconds=budget.max_seconds)


def over_budget(
    budget: Budget, totals: Totals, deadline: datetime | None, at: datetime | None
) -> Evidence | None:
    """Every limit ``totals`` went over (or the deadline ``at`` passed), first one as the rule.

    A limit is the most a trace may use, so reaching it is fine and going over it is not.
    """
    over: dict[str, dict[str, Any]] = {}
    if budget.max_hops is not None and totals.hops > budget.max_hops:
        over["hops"] = {"used": totals.hops, "limit": budget.max_hops}
    tokens = totals.tokens_in + totals.tokens_out
    if budget.max_tokens is not None and tokens > budget.max_tokens:
        over["tokens"] = {"used": tokens, "limit": budget.max_tokens}
    if budget.max_cost is not None and totals.cost > budget.max_cost:
        over["cost"] = {"used": totals.cost, "limit": budget.max_cost}
    if deadline is not None and at is not None and at > deadline:
        over["wall_clock"] = {"at": at.isoformat(), "deadline": deadline.isoformat()}
    if not over:
        return None
    return Evidence(rule=f"budget.{next(iter(over))}", hops=[totals.hops], details=over)
