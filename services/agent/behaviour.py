"""What an agent does with one event, apart from Kafka: the pluggable part of a worker.

The consumer loop (services.agent.service) owns delivery, budgets, commits and draining; a
behaviour only turns an event into outbox records. The default behaviour asks a model; the
router and supervisor services plug in their own.
"""

from __future__ import annotations

from typing import Protocol

from schemas import Envelope, Usage
from schemas.records import STEP_FAILED
from services.agent import step as steps
from services.runtime.llm import ModelClient, ModelError
from services.runtime.spec import AgentSpec, MeshSpec


class Behaviour(Protocol):
    """Turns one received event into the step's outbox records (at least one)."""

    async def step(self, event: Envelope) -> list[Envelope]: ...

    async def aclose(self) -> None: ...


class ModelAgent:
    """Prompt from state, one model call, the first matching route, one delta."""

    def __init__(self, spec: MeshSpec, agent: AgentSpec) -> None:
        self.agent = agent
        self.model = ModelClient.for_tier(agent.model, spec.models[agent.model])

    async def step(self, event: Envelope) -> list[Envelope]:
        messages = steps.render_messages(self.agent, event)
        try:
            completion = await self.model.complete(
                messages, agent=self.agent.name, temperature=self.agent.temperature,
                max_tokens=self.agent.max_tokens)
        except ModelError as exc:
            return [steps.step_event(
                self.agent, event, STEP_FAILED,
                payload={"reason": f"{self.agent.name}: model call failed: {exc}"},
                usage=Usage(model=self.model.model, calls=exc.attempts))]
        return [steps.outcome(self.agent, event, completion.text, completion.usage, messages)]

    async def aclose(self) -> None:
        await self.model.aclose()
