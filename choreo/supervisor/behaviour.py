"""The supervisor behaviour: plan, assign, gather, judge, then follow up or finish.

Runs in the generic agent loop (delivery, budgets, dead letters, draining come with it). Each
step reads the plan's progress from the event's snapshot and writes the new progress as its
delta, so nothing lives in process memory. Several assignments of one step are numbered
outputs; only the first carries the delta and the judge's usage.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from choreo.agent import step as steps
from choreo.models.client import ModelClient, ModelError
from choreo.schemas import Envelope, Usage
from choreo.schemas.codec import to_json
from choreo.schemas.ids import fingerprint
from choreo.schemas.records import FAIL, FINISH, STEP_FAILED
from choreo.spec.mesh import AgentSpec, MeshSpec
from choreo.spec.supervisor import PlanSpec
from choreo.supervisor import judge, plan

#: The type of a step that only notes an answer while others of its round are still out.
#: No agent subscribes to it: the keeper folds it (a hop record) and forwards nothing.
WAITING = "supervisor.waiting"


class Supervisor:
    def __init__(self, spec: MeshSpec, agent: AgentSpec) -> None:
        assert agent.plan is not None, "a supervisor needs a plan (checked by the spec)"
        self.agent = agent
        self.plan: PlanSpec = agent.plan
        # Only a model agent may use `auto` (checked by the spec): a supervisor has its own tier.
        self.model = (
            ModelClient.for_tier(agent.model, spec.models[agent.model])
            if any(s.judge for s in self.plan.stages)
            else None
        )

    async def step(self, event: Envelope) -> list[Envelope]:
        state = event.state or {}
        progress = plan.load(state.get(self.plan.state))
        arrivals: list[str] = list(state.get(self.plan.arrivals or "", None) or [])
        seen = {"input_fingerprint": fingerprint(to_json([event.type, state]))}
        back = plan.returned(self.plan, progress, event.type, arrivals)
        if back is None:
            out = sorted(set(progress.assigned) - set(arrivals[progress.start :]))
            return [
                steps.step_event(
                    self.agent,
                    event,
                    WAITING,
                    payload={
                        **seen,
                        "text": f"{event.type} noted; waiting for {', '.join(out) or 'none'}",
                    },
                )
            ]
        try:
            verdicts, usage = await self._judge(back, progress, state, event.budget.deadline)
        except ModelError as exc:
            return [
                steps.step_event(
                    self.agent,
                    event,
                    STEP_FAILED,
                    payload={**seen, "reason": f"{self.agent.name}: judge call failed: {exc}"},
                    usage=exc.usage,
                )
            ]
        decision = plan.advance(self.plan, progress, verdicts, len(arrivals))
        delta: dict[str, Any] = {self.plan.state: plan.dump(decision.progress), **decision.feedback}
        judged = "; ".join(
            f"{v.stage}: {'PASS' if v.passed else 'FAIL'} ({v.reasons})" for v in verdicts
        )
        if decision.fail is not None:
            return [
                steps.step_event(
                    self.agent,
                    event,
                    FAIL,
                    delta=delta,
                    usage=usage,
                    payload={
                        **seen,
                        "text": judged,
                        "reason": f"{self.agent.name}: {decision.fail}",
                    },
                )
            ]
        if decision.finish:
            return [
                steps.step_event(
                    self.agent,
                    event,
                    FINISH,
                    delta=delta,
                    usage=usage,
                    payload={**seen, "text": judged, "output_field": self.plan.output},
                )
            ]
        return [
            steps.step_event(
                self.agent,
                event,
                self.plan.stage(name).assign,
                index=i,
                delta=delta if i == 0 else None,
                usage=usage if i == 0 else None,
                payload={
                    **seen,
                    "stage": name,
                    "attempt": decision.progress.attempts[name],
                    "text": "; ".join(
                        filter(
                            None,
                            [judged, f"assign {name} (attempt {decision.progress.attempts[name]})"],
                        )
                    ),
                },
            )
            for i, name in enumerate(decision.assign)
        ]

    async def _judge(
        self,
        stages: list[str],
        progress: plan.Progress,
        state: dict[str, Any],
        deadline: datetime | None,
    ) -> tuple[list[plan.Verdict], Usage]:
        """Judge every returned stage at once; stages with no criteria pass as they are."""

        async def one(name: str) -> tuple[plan.Verdict, Usage]:
            stage = self.plan.stage(name)
            attempt = progress.attempts.get(name, 0)
            if stage.judge is None or self.model is None:
                return plan.Verdict(name, attempt, True, "accepted (no criteria)"), Usage()
            completion = await self.model.complete(
                judge.messages(self.agent, stage, state),
                agent=self.agent.name,
                temperature=self.agent.temperature,
                max_tokens=self.agent.max_tokens,
                deadline=deadline,
            )
            return judge.parse(name, attempt, completion.text), completion.usage

        results = await asyncio.gather(*(one(name) for name in stages))
        return [v for v, _ in results], _total([u for _, u in results])

    async def aclose(self) -> None:
        if self.model is not None:
            await self.model.aclose()


def _total(usages: list[Usage]) -> Usage:
    """One step's usage from its judge calls, so the trace counts each call once."""
    models = sorted({u.model for u in usages if u.model})
    return Usage(
        tokens_in=sum(u.tokens_in for u in usages),
        tokens_out=sum(u.tokens_out for u in usages),
        cost=sum(u.cost for u in usages),
        latency_ms=max((u.latency_ms for u in usages), default=0.0),
        model=",".join(models) or None,
        calls=sum(u.calls for u in usages),
    )
