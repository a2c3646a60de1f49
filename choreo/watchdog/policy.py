"""From evidence to verdicts: what the watchdog says about a trace, and when.

Budgets are hard: going over one halts the trace at once and escalates it. Loops are soft
first: the first loop evidence about an agent shifts that agent's persona (new temperature, a
restricted debugger prompt); if the evidence keeps coming on ``halt_after_shift`` more of its
hops, the trace is halted and escalated. Every verdict has a deterministic id and is emitted
at most once per trace and key (``persona_shift:<agent>``, ``halt``), and a hop record seen twice
(at-least-once delivery) is ignored, so replays and redeliveries say nothing new.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from choreo.schemas import Budget, ControlVerdict, HopRecord, Totals
from choreo.schemas.ids import derive_event_id, fingerprint
from choreo.schemas.records import FAIL, FINISH, STEP_FAILED, STEP_REFUSED, TraceStatus
from choreo.schemas.shapes import normalise
from choreo.spec.watchdog import WatchdogSpec
from choreo.watchdog.detectors import (
    AgentWatch,
    Evidence,
    Match,
    Seen,
    Step,
    TraceWatch,
    best_match,
    cycle,
    deadline_of,
    meet,
    meeting_key,
    over_budget,
    ping_pong,
    remember,
    revisit,
    state_shape,
    stuck,
    tool_repeat,
)

SOURCE = "watchdog"
#: Value shapes remembered per state field: a field that cycles through more is not looping.
VALUES_KEPT = 64
#: Hop record types after which the trace is over: no verdict can concern it any more.
ENDING = frozenset({FINISH, FAIL, STEP_REFUSED, STEP_FAILED})

#: What the watchdog answers: verdicts only. The keeper writes a halted trace's one
#: escalation when it applies the halt (choreo.keeper.fold.escalation).
Answer = ControlVerdict


class SnapshotHead(msgspec.Struct, kw_only=True):
    """The part of a state snapshot the watchdog needs: its budget, start, totals and status."""

    trace_id: str
    version: int = 0
    status: TraceStatus = "running"
    budget: Budget = msgspec.field(default_factory=Budget)
    totals: Totals = msgspec.field(default_factory=Totals)
    admitted_at: datetime | None = None
    updated_at: datetime | None = None
    #: Agents with a persona shift in force; only the names are read.
    personas: dict[str, Any] = msgspec.field(default_factory=dict)


class Watchdog:
    """The verdict policy over :class:`TraceWatch` states; mutates the state it is given."""

    def __init__(self, spec: WatchdogSpec, default_budget: Budget) -> None:
        self.spec = spec
        self.default_budget = default_budget

    def on_hop(self, watch: TraceWatch, hop: HopRecord, now: datetime) -> list[Answer]:
        """Account one hop record; return the verdicts (and escalation) it calls for."""
        if (
            watch.finished
            or watch.halted
            or hop.state_version <= watch.hop_version
            or hop.event_id in watch.event_ids
        ):
            return []
        if hop.type in ENDING or hop.status != "ok":  # the keeper has ended the trace
            watch.finished = True
            _retire(watch)
            return []
        remember(watch.event_ids, [hop.event_id])
        watch.hop_version = hop.state_version
        watch.first_seen_at = watch.first_seen_at or hop.created_at
        watch.state_version = max(watch.state_version, hop.state_version)
        self._advance(watch, hop.totals, hop.created_at)
        if (exhausted := self._over_budget(watch)) is not None:
            return self._halt(watch, exhausted, {"hop": hop.hop}, now)
        found = self._observe(watch, hop)
        return self._answer_loop(watch, hop, found, now) if found else []

    def on_snapshot(self, watch: TraceWatch, snap: SnapshotHead, now: datetime) -> list[Answer]:
        """Learn the trace's admitted budget and start; a finished trace is forgotten."""
        if watch.finished:
            return []
        watch.budget = snap.budget
        watch.admitted_at = snap.admitted_at
        if snap.status != "running":
            watch.finished = True
            _retire(watch)
            return []
        if watch.halted:
            return []
        watch.state_version = max(watch.state_version, snap.version)
        for name in snap.personas:  # the version a shift took effect at
            shifted = watch.agents.get(name)
            if shifted is not None and shifted.shift_version is None:
                shifted.shift_version = snap.version
        self._advance(watch, snap.totals, snap.updated_at)
        if (exhausted := self._over_budget(watch)) is not None:
            return self._halt(watch, exhausted, {"state_version": snap.version}, now)
        return []

    # -- budgets -------------------------------------------------------------------------

    @staticmethod
    def _advance(watch: TraceWatch, totals: Totals, at: datetime | None) -> None:
        """Keep the latest exact totals (most hops) and the latest event time."""
        if totals.hops >= watch.totals.hops:
            watch.totals = totals
        if at is not None and (watch.last_at is None or at > watch.last_at):
            watch.last_at = at

    def _over_budget(self, watch: TraceWatch) -> Evidence | None:
        budget = watch.budget or self.default_budget
        deadline = deadline_of(budget, watch.admitted_at or watch.first_seen_at)
        return over_budget(budget, watch.totals, deadline, watch.last_at)

    # -- loops ---------------------------------------------------------------------------

    def _observe(self, watch: TraceWatch, hop: HopRecord) -> list[Evidence]:
        """Feed one hop to every loop rule; return the evidence found, all about ``hop.agent``."""
        spec = self.spec
        found = [cycle(watch.meetings, hop.agent, hop.hop, hop.input_fingerprint, hop.state_hash)]
        meet(watch.meetings, meeting_key(hop.agent, hop.input_fingerprint, hop.state_hash), hop.hop)
        watch.recent.append(Step(hop.hop, hop.agent, hop.state_hash))
        del watch.recent[: -2 * spec.ping_pong_rounds]
        found.append(ping_pong(watch.recent, spec.ping_pong_rounds))
        found.append(self._stuck(watch, hop))
        if hop.field_hashes:
            shape = state_shape(hop.field_hashes)
            found.append(
                revisit(
                    watch.shapes, watch.revisits, hop.agent, hop.hop, shape, spec.revisit_repeats
                )
            )
            watch.shapes.append(Seen(hop.hop, shape))
            del watch.shapes[: -spec.revisit_window]
            oldest = watch.shapes[0].hop
            watch.revisits = [r for r in watch.revisits if r.hop > oldest]
        if hop.tool_calls:
            remember(
                watch.tool_calls,
                [Seen(hop.hop, f"{c.name}|{c.args_sha256}") for c in hop.tool_calls],
            )
            found.append(tool_repeat(watch.tool_calls, hop.agent, hop.hop, spec.tool_repeats))
        return [e for e in found if e is not None]

    def _stuck(self, watch: TraceWatch, hop: HopRecord) -> Evidence | None:
        """The progress-aware stuck rule: an output like one of the agent's recent outputs
        extends its streak only when the hop *stalled*: it gave no state field a value shape
        the trace had never seen, and the agent either met a situation it had met before or
        repeated itself word for word.
        """
        spec = self.spec
        agent = watch.agents.setdefault(hop.agent, AgentWatch())
        text = normalise(hop.output)
        similarity = best_match(text, agent.outputs, spec.ngram) if text else 0.0
        matched = similarity >= spec.similarity
        exact = fingerprint(hop.output.encode())
        repeated = exact in agent.exact or (
            bool(hop.situation) and hop.situation in agent.situations
        )
        novel = self._novel(watch, hop)
        if matched and repeated and not novel:
            agent.streak.append(Match(hop.hop, similarity))
            del agent.streak[: -spec.stuck_repeats]
        else:
            agent.streak.clear()
        for window, item in (
            (agent.outputs, text),
            (agent.exact, exact),
            (agent.situations, hop.situation),
        ):
            window.append(item)
            del window[: -spec.stuck_window]
        return stuck(hop.agent, agent.streak, spec.stuck_repeats, spec.similarity)

    @staticmethod
    def _novel(watch: TraceWatch, hop: HopRecord) -> bool:
        """Whether the hop gave some state field (or a new field) a value shape the trace had
        never seen; remembers the shapes."""
        novel = False
        for name, shape in hop.field_hashes.items():
            seen = watch.values.setdefault(name, [])
            if shape not in seen:
                novel = True
                seen.append(shape)
                del seen[:-VALUES_KEPT]
        return novel

    def _answer_loop(
        self, watch: TraceWatch, hop: HopRecord, found: list[Evidence], now: datetime
    ) -> list[Answer]:
        agent = watch.agents[hop.agent]
        reason = f"loop.{found[0].rule}"
        evidence: dict[str, Any] = {
            "hop": hop.hop,
            "trace_hops": hop.totals.hops,
            "matched": [msgspec.to_builtins(e) for e in found],
        }
        if agent.shifted_at is None:
            agent.shifted_at = hop.hop
            return self._shift(watch, hop.agent, reason, evidence, now)
        if agent.shift_version is None or hop.read_version < agent.shift_version:
            return []  # the step ran without the shifted persona: it says nothing of the shift
        agent.evidence_after_shift.append(hop.hop)
        if len(agent.evidence_after_shift) < self.spec.halt_after_shift:
            return []
        evidence |= {"shifted_at": agent.shifted_at, "after_shift": agent.evidence_after_shift}
        return self._halt(watch, Evidence(rule=found[0].rule, agent=hop.agent), evidence, now)

    # -- verdicts ------------------------------------------------------------------------

    def _shift(
        self, watch: TraceWatch, agent: str, reason: str, evidence: dict[str, Any], now: datetime
    ) -> list[Answer]:
        verdict = self._verdict(watch, "persona_shift", reason, evidence, now, agent)
        if verdict is None:
            return []
        verdict.temperature = self.spec.shift_temperature
        verdict.system_prompt = self.spec.shift_system_prompt
        return [verdict]

    def _halt(
        self, watch: TraceWatch, cause: Evidence, evidence: dict[str, Any], now: datetime
    ) -> list[Answer]:
        reason = cause.rule if cause.rule.startswith("budget.") else f"loop.{cause.rule}"
        evidence = {**msgspec.to_builtins(cause), **evidence}
        verdict = self._verdict(watch, "halt", reason, evidence, now, cause.agent)
        watch.halted = True
        _retire(watch)
        return [] if verdict is None else [verdict]

    @staticmethod
    def _verdict(
        watch: TraceWatch,
        action: Literal["halt", "persona_shift"],
        reason: str,
        evidence: dict[str, Any],
        now: datetime,
        agent: str | None,
    ) -> ControlVerdict | None:
        """A verdict with a deterministic id, or ``None`` if this trace already had it."""
        key = "halt" if action == "halt" else f"persona_shift:{agent}"
        if key in watch.verdicts:
            return None
        watch.verdicts.append(key)
        return ControlVerdict(
            verdict_id=derive_event_id(watch.trace_id, f"{SOURCE}/{key}"),
            trace_id=watch.trace_id,
            action=action,
            reason=reason,
            evidence=evidence,
            agent=agent,
            source=SOURCE,
            created_at=now,
        )


def _retire(watch: TraceWatch) -> None:
    """Drop the loop history of a trace that can no longer loop, to keep the table small."""
    watch.meetings.clear()
    watch.recent.clear()
    watch.agents.clear()
    watch.event_ids.clear()
    watch.values.clear()
    watch.shapes.clear()
    watch.revisits.clear()
    watch.tool_calls.clear()
