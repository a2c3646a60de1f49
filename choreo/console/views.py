"""What each page of the console shows, as JSON-ready data: pure functions over what
choreo.client.Client returns.

Values from the mesh (task input, model output, tool results, dead-letter bytes) go out as
JSON strings and nothing else: the page puts them into text nodes, never into markup.
Times are milliseconds from the start of the trace's first step, money is US dollars.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from choreo.client.reports import AgentGroup, DeadLetterEntry, TraceBudget
from choreo.schemas import ControlVerdict, Escalation, HopRecord, Snapshot, TerminalResult
from choreo.spec.mesh import MeshSpec


def builtins(value: Any) -> Any:
    """``value`` (records, dataclasses, datetimes) as plain JSON types."""
    return msgspec.to_builtins(value)


def as_text(value: Any) -> str:
    """A state value as the text the page shows: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(builtins(value), indent=1, ensure_ascii=False, sort_keys=True)


def _ms(at: datetime, origin: datetime) -> float:
    return (at - origin).total_seconds() * 1000


@dataclass(frozen=True)
class Timeline:
    """What the trace page shows of one trace, each list in log order: its hop records,
    terminal records and verdicts (no state: a long trace's snapshots hold its whole state at
    every version, and the page needs none of it)."""

    trace_id: str
    hops: list[HopRecord]
    results: list[TerminalResult]
    verdicts: list[ControlVerdict]


def trace_view(timeline: Timeline, spec: MeshSpec) -> dict[str, Any]:
    """The trace page: each step as a bar of the waterfall (start and latency in ms from the
    first step's start, tokens, cost, status, its tool calls), fan-outs (steps caused by one
    event), the joins of ``spec`` its steps met (the steps that emitted what a join waits
    for), verdicts placed after the step they followed, the terminal record, and the burn-down
    of the budget."""
    hops = sorted(timeline.hops, key=lambda h: (h.hop, h.created_at))
    origin = _origin(timeline, hops)
    siblings: defaultdict[str, list[str]] = defaultdict(list)
    for hop in hops:
        if hop.causation_id is not None:
            siblings[hop.causation_id].append(hop.event_id)
    fanouts = {cause: events for cause, events in siblings.items() if len(events) > 1}
    branch_of = {e: cause for cause, events in fanouts.items() for e in events}
    joins = {
        join.name: [h.event_id for h in hops if h.type == join.wait_for] for join in spec.joins
    }
    result = timeline.results[0] if timeline.results else None
    return {
        "trace_id": timeline.trace_id,
        "status": result.status if result is not None else "running",
        "steps": [_step(hop, origin, branch_of.get(hop.event_id)) for hop in hops],
        "fanouts": fanouts,
        "joins": {name: arrivals for name, arrivals in joins.items() if arrivals},
        "verdicts": [
            {
                "action": v.action,
                "reason": v.reason,
                "agent": v.agent,
                "source": v.source,
                "at_ms": _ms(v.created_at, origin),
                "after_hop": max((h.hop for h in hops if h.created_at <= v.created_at), default=0),
                "evidence": as_text(v.evidence),
            }
            for v in timeline.verdicts
        ],
        "result": None if result is None else _result(result, len(timeline.results), origin),
        "burn": _burn(hops, origin),
    }


def _origin(timeline: Timeline, hops: list[HopRecord]) -> datetime:
    """When the trace's first step started (else when it ended)."""
    if hops:
        return min(h.created_at - timedelta(milliseconds=h.duration_ms) for h in hops)
    return timeline.results[0].finished_at


def _step(hop: HopRecord, origin: datetime, branch: str | None) -> dict[str, Any]:
    end = _ms(hop.created_at, origin)
    return {
        "hop": hop.hop,
        "agent": hop.agent,
        "type": hop.type,
        "status": hop.status,
        "event_id": hop.event_id,
        "causation_id": hop.causation_id,
        "branch_of": branch,
        "start_ms": max(0.0, end - hop.duration_ms),
        "duration_ms": hop.duration_ms,
        "tokens": hop.usage.tokens_in + hop.usage.tokens_out,
        "cost": hop.usage.cost,
        "state_version": hop.state_version,
        "conflicts": hop.conflicts,
        "output": hop.output,
        "tool_calls": [
            {
                "name": call.name,
                "status": call.status,
                "latency_ms": call.latency_ms,
                "result_chars": call.result_chars,
                "server": call.server,
            }
            for call in hop.tool_calls
        ],
    }


def _result(result: TerminalResult, count: int, origin: datetime) -> dict[str, Any]:
    return {
        "status": result.status,
        "reason": result.reason,
        "output": None if result.output is None else as_text(result.output),
        "at_ms": _ms(result.finished_at, origin),
        "state_version": result.state_version,
        "parent_trace_id": result.parent_trace_id,
        "count": count,
    }


def _burn(hops: list[HopRecord], origin: datetime) -> list[dict[str, Any]]:
    """What the trace had used after each step: steps, tokens, dollars, seconds."""
    return [
        {
            "hop": hop.hop,
            "hops": hop.totals.hops,
            "tokens": hop.totals.tokens_in + hop.totals.tokens_out,
            "cost": hop.totals.cost,
            "seconds": _ms(hop.created_at, origin) / 1000,
        }
        for hop in hops
    ]


def budget_view(budget: TraceBudget) -> dict[str, Any]:
    """Each limit (``None``: none), what is used and what is left."""
    used = budget.used
    left = budget.left
    limits = budget.budget
    return {
        "trace_id": budget.trace_id,
        "status": budget.status,
        "version": budget.version,
        "rows": [
            {"name": "steps", "limit": limits.max_hops, "used": used.hops, "left": left.hops},
            {
                "name": "tokens",
                "limit": limits.max_tokens,
                "used": used.tokens_in + used.tokens_out,
                "left": left.tokens,
            },
            {"name": "cost", "limit": limits.max_cost, "used": used.cost, "left": left.cost},
            {
                "name": "seconds",
                "limit": limits.max_seconds,
                "used": budget.elapsed_s,
                "left": left.seconds,
            },
        ],
    }


def state_view(
    versions: list[Snapshot], at: int, against: int, conflicts: list[Any]
) -> dict[str, Any]:
    """The state at version ``at`` (from 1): every field with its writer and the version it
    was written at, and the diff against version ``against`` (0: none); the trace's state
    conflicts."""
    now = versions[at - 1]
    before = versions[against - 1].fields if against >= 1 else {}
    names = sorted(set(now.fields) | set(before))
    diff = []
    for name in names:
        if name not in now.fields:
            diff.append({"name": name, "kind": "removed", "before": as_text(before[name])})
        elif name not in before:
            diff.append({"name": name, "kind": "added", "after": as_text(now.fields[name])})
        elif before[name] != now.fields[name]:
            diff.append(
                {
                    "name": name,
                    "kind": "changed",
                    "before": as_text(before[name]),
                    "after": as_text(now.fields[name]),
                }
            )
    return {
        "trace_id": now.trace_id,
        "versions": len(versions),
        "at": at,
        "against": against,
        "status": now.status,
        "fields": [
            {
                "name": name,
                "value": as_text(value),
                "writer": (w := now.writes.get(name)) and w.agent,
                "written_at": w.version if w is not None else None,
            }
            for name, value in sorted(now.fields.items())
        ],
        "diff": diff,
        "conflicts": [builtins(c) for c in conflicts],
    }


def escalation_view(escalation: Escalation) -> dict[str, Any]:
    """An escalation with its evidence as text."""
    return {**builtins(escalation), "evidence": as_text(escalation.evidence)}


def letter_view(entry: DeadLetterEntry) -> dict[str, Any]:
    """A dead letter with its original bytes as text (invalid UTF-8 replaced) and base64."""
    letter = entry.letter
    return {
        "id": entry.id,
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "key": letter.key,
        "reason": letter.reason,
        "consumer": letter.consumer,
        "created_at": builtins(letter.created_at),
        "original_text": letter.original.decode("utf-8", errors="replace"),
        "original_b64": base64.b64encode(letter.original).decode(),
    }


def mesh_view(spec: MeshSpec, groups: list[AgentGroup]) -> dict[str, Any]:
    """The agents as a graph: what each subscribes to and emits (its routes), the joins, and
    each agent's replicas (in the spec and live) and consumer lag."""
    live = {g.agent: g for g in groups}
    agents = []
    for agent in spec.agents:
        group = live.get(agent.name)
        emits = [r.emit for r in agent.routes if r.emit] + list(agent.emit)
        agents.append(
            {
                "name": agent.name,
                "kind": agent.kind,
                "subscribe": agent.subscribe,
                "emits": list(dict.fromkeys(emits)),
                "finishes": any(r.finish for r in agent.routes),
                "routes": [
                    {
                        "when": r.when,
                        "emit": r.emit,
                        "finish": r.finish,
                        "fail": r.fail,
                    }
                    for r in agent.routes
                ],
                "replicas": agent.replicas,
                "live": group.replicas if group is not None else 0,
                "lag": group.lag if group is not None else None,
            }
        )
    return {
        "name": spec.name,
        "entry": spec.entry,
        "agents": agents,
        "joins": [
            {"name": j.name, "wait_for": j.wait_for, "count": j.count, "emit": j.emit}
            for j in spec.joins
        ],
    }
