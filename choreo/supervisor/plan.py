"""The supervisor's bookkeeping as pure functions: what came back, what to do next.

Progress lives in a state field, never in the process: each supervisor step reads it from
the event's snapshot and returns the new progress as a delta, so a restarted or rescheduled
supervisor resumes exactly where the log says it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from choreo.spec.supervisor import PlanSpec


class Verdict(msgspec.Struct, frozen=True):
    """The judge's decision on one stage's result."""

    stage: str
    attempt: int
    passed: bool
    reasons: str


class Progress(msgspec.Struct, kw_only=True):
    """Where a trace is in its plan: the state field ``plan.state`` holds this, as JSON.

    ``assigned`` is the current round (stages out with workers); ``start`` the length of the
    arrivals field when it was assigned, so only this round's arrivals count.
    """

    round: int = 0
    assigned: list[str] = msgspec.field(default_factory=list)
    start: int = 0
    passed: list[str] = msgspec.field(default_factory=list)
    attempts: dict[str, int] = msgspec.field(default_factory=dict)
    verdicts: list[Verdict] = msgspec.field(default_factory=list)


@dataclass
class Decision:
    """What one supervisor step does: assign stages, finish, or fail, and the new progress."""

    progress: Progress
    assign: list[str] = field(default_factory=list)
    finish: bool = False
    fail: str | None = None
    feedback: dict[str, str] = field(default_factory=dict)


def load(value: Any) -> Progress:
    """The progress stored in the state (a fresh plan when there is none)."""
    return Progress() if value is None else msgspec.convert(value, Progress)


def dump(progress: Progress) -> dict[str, Any]:
    builtins: dict[str, Any] = msgspec.to_builtins(progress)
    return builtins


def returned(
    plan: PlanSpec, progress: Progress, event_type: str, arrivals: list[str]
) -> list[str] | None:
    """The stages to judge now, or None while the round is still out.

    The first event of a trace starts the plan (nothing to judge: an empty list). An answer
    completes its round when every assigned stage is among the arrivals since the round
    began. The keeper folds one step at a time, so exactly one answer's snapshot is the first
    to show the round complete: only that step acts, however many answers race back.
    """
    stage = next((s for s in plan.stages if s.returns == event_type), None)
    if stage is None:
        return [] if progress.round == 0 else None
    if stage.name not in progress.assigned:
        return None  # a late or repeated answer of a round already judged
    if len(progress.assigned) == 1:
        return [stage.name]
    back = set(arrivals[progress.start :])
    return list(progress.assigned) if back.issuperset(progress.assigned) else None


def advance(plan: PlanSpec, progress: Progress, verdicts: list[Verdict], arrivals: int) -> Decision:
    """Fold the round's verdicts into the progress and choose the next move.

    Failed stages with attempts left go out again, with the judge's reasons as feedback; a
    stage out of attempts fails the trace. Once a round passes, every stage whose ``after``
    have all passed is assigned at once (in parallel); when none is left, the trace finishes.
    """
    new = msgspec.structs.replace(
        progress,
        verdicts=[*progress.verdicts, *verdicts],
        passed=[*progress.passed, *(v.stage for v in verdicts if v.passed)],
    )
    failed = [v for v in verdicts if not v.passed]
    decision = Decision(progress=new)
    for verdict in failed:
        stage = plan.stage(verdict.stage)
        if new.attempts.get(stage.name, 0) >= stage.max_attempts:
            decision.fail = (
                f"stage {stage.name!r} failed after {stage.max_attempts} "
                f"attempt(s): {verdict.reasons}"
            )
            return decision
        if stage.feedback:
            decision.feedback[stage.feedback] = verdict.reasons
    if failed:
        return _assign(decision, [v.stage for v in failed], arrivals)
    ready = [
        s.name
        for s in plan.stages
        if s.name not in new.passed and all(a in new.passed for a in s.after)
    ]
    if ready:
        return _assign(decision, ready, arrivals)
    decision.finish = True
    decision.progress.assigned = []
    return decision


def _assign(decision: Decision, stages: list[str], arrivals: int) -> Decision:
    progress = decision.progress
    decision.assign = stages
    progress.round += 1
    progress.assigned = stages
    progress.start = arrivals
    progress.attempts = {
        **progress.attempts,
        **{s: progress.attempts.get(s, 0) + 1 for s in stages},
    }
    return decision
