"""The router behaviour: one classification per task, exactly one event out.

With ``classify: model`` a (small, cheap) model names a label and the rules are the fallback
when its answer names none or the call fails; with ``classify: rules`` no model is called.
On a tier that takes a JSON schema the answer is held to ``{"label": one of the labels}``.
The choice and how it was made go in the step's payload and hop record.
"""

from __future__ import annotations

from choreo.agent import step as steps
from choreo.models.client import ModelClient, ModelError
from choreo.router import classify
from choreo.schemas import Envelope, Usage
from choreo.schemas.ids import fingerprint
from choreo.schemas.records import STEP_FAILED
from choreo.spec.mesh import AgentSpec, MeshSpec, Route


class Router:
    def __init__(self, spec: MeshSpec, agent: AgentSpec) -> None:
        self.agent = agent
        # Only a model agent may use `auto` (checked by the spec): a router has its own tier.
        self.model = (
            ModelClient.for_tier(agent.model, spec.models[agent.model])
            if agent.classify == "model"
            else None
        )

    async def step(self, event: Envelope) -> list[Envelope]:
        text = classify.subject(self.agent, event)
        route, method, usage = await self._ask_model(event)
        if route is None:
            route = classify.by_rules(self.agent, text)
        if route is None or route.emit is None:
            return [
                steps.step_event(
                    self.agent,
                    event,
                    STEP_FAILED,
                    usage=usage,
                    payload={
                        "reason": f"{self.agent.name}: no rule matched and there is no default "
                        "route",
                        "classified_by": method,
                    },
                )
            ]
        label = route.label or route.emit
        return [
            steps.step_event(
                self.agent,
                event,
                route.emit,
                delta=steps.build_delta(self.agent, route, label, event),
                usage=usage,
                payload={
                    "text": f"{label} (by {method})",
                    "route": label,
                    "classified_by": method,
                    "input_fingerprint": fingerprint(text.encode()),
                },
            )
        ]

    async def _ask_model(self, event: Envelope) -> tuple[Route | None, str, Usage]:
        """The model's choice, or None with why the rules decide instead."""
        if self.model is None:
            return None, "rules", Usage()
        messages = steps.render_messages(self.agent, event, classify.instructions(self.agent))
        try:
            completion = await self.model.complete(
                messages,
                agent=self.agent.name,
                temperature=self.agent.temperature,
                max_tokens=self.agent.max_tokens,
                deadline=event.budget.deadline,
                response_format=classify.label_format(
                    self.agent, self.model.tier.structured_output
                ),
            )
        except ModelError as exc:
            return None, f"rules (model failed: {exc.reason})", exc.usage
        route = classify.by_label(self.agent, classify.answered_label(completion.text))
        if route is None:
            return (
                None,
                f"rules (model answered {completion.text.strip()[:40]!r})",
                completion.usage,
            )
        return route, "model", completion.usage

    async def aclose(self) -> None:
        if self.model is not None:
            await self.model.aclose()
