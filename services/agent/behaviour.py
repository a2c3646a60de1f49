"""What an agent does with one event, apart from Kafka: the pluggable part of a worker.

The consumer loop (services.agent.service) owns delivery, budgets, commits and draining; a
behaviour only turns an event into outbox records. The default behaviour asks a model; the
router and supervisor services plug in their own.
"""

from __future__ import annotations

from typing import Any, Protocol

from choreo.schemas import Envelope, Usage
from choreo.schemas.records import STEP_FAILED
from choreo.services.agent import step as steps
from choreo.services.runtime import context
from choreo.services.runtime.context import estimate_tokens
from choreo.services.runtime.llm import ModelClient, ModelError
from choreo.services.runtime.settings import get_settings
from choreo.services.runtime.spec import AUTO_TIER, AgentSpec, MeshSpec


class Behaviour(Protocol):
    """Turns one received event into the step's outbox records (at least one)."""

    async def step(self, event: Envelope) -> list[Envelope]: ...

    async def aclose(self) -> None: ...


class ModelAgent:
    """Prompt from state (fitted to the agent's context budget), one model call on the tier the
    spec names or ``auto`` picks, the first matching route, one delta.

    Holds one client per tier it may use, so the tier's limits and circuit are shared by every
    step of the process. When the context budget makes a summarizer call, its usage is added to
    the step's and its writes (the summary and the fold counts) join the step's delta.
    """

    def __init__(self, spec: MeshSpec, agent: AgentSpec,
                 max_reply_bytes: int | None = None) -> None:
        """``max_reply_bytes`` defaults to the process settings' (``CHOREO_MAX_REPLY_BYTES``)."""
        self.spec = spec
        self.agent = agent
        self.max_reply_bytes = (get_settings().max_reply_bytes if max_reply_bytes is None
                                else max_reply_bytes)
        self.clients = {name: ModelClient.for_tier(name, spec.models[name])
                        for name in sorted(_tiers(spec, agent))}

    @property
    def models(self) -> list[str]:
        """The model names of every tier this agent may call (for metrics)."""
        return sorted({client.model for client in self.clients.values()})

    async def step(self, event: Envelope) -> list[Envelope]:
        try:
            messages, writes, spent = await self._fit(event)
        except ModelError as exc:
            return [self._failed(event, "summarizer", exc, Usage())]
        estimated = estimate_tokens(messages)
        client = self.clients[self.spec.tier_for(self.agent, estimated)]
        try:
            completion = await client.complete(
                messages, agent=self.agent.name, temperature=temperature(self.agent, event),
                max_tokens=self.agent.max_tokens, deadline=event.budget.deadline)
        except ModelError as exc:
            return [self._failed(event, "model", exc, spent)]
        text, cut = steps.fit_reply(completion.text, self.max_reply_bytes)
        out = steps.outcome(self.agent, event, text, _plus(spent, completion.usage), messages,
                            cut)
        if writes and out.delta is not None:
            out.delta = {**writes, **out.delta}  # the agent's own writes win
            out.payload["context"] = {"summarized": True, "estimated_tokens": estimated}
        return [out]

    async def _fit(self, event: Envelope
                   ) -> tuple[list[dict[str, str]], dict[str, Any], Usage]:
        """The step's messages within the context budget, the summary writes (if a fold was
        needed) and the summarizer's usage."""
        ctx = self.agent.context
        if ctx is None:
            return steps.render_messages(self.agent, event, system_prompt(self.agent, event)), \
                {}, Usage()
        state = event.state or {}
        visible = context.visible_state(ctx, state)
        names = context.reads(ctx, steps.read_names(self.agent, visible))
        messages = steps.render_fields(system_prompt(self.agent, event), names, visible)
        older = context.older_items(ctx, visible)
        if estimate_tokens(messages) <= ctx.max_input_tokens or not older:
            return messages, {}, Usage()  # within budget, or nothing old enough to fold
        summarizer = self.clients[self.spec.summary_tier(self.agent)]
        completion = await summarizer.complete(
            context.summarizer_messages(ctx, visible, older), agent=self.agent.name,
            temperature=0.0, deadline=event.budget.deadline)
        visible, writes = context.fold(ctx, state, visible, older, completion.text.strip())
        messages = steps.render_fields(system_prompt(self.agent, event), names, visible)
        return messages, writes, completion.usage

    def _failed(self, event: Envelope, call: str, exc: ModelError, spent: Usage) -> Envelope:
        """A failed step: the trace ends ``failed`` with why, and what was spent (the
        failed call's billed tokens too) is counted."""
        return steps.step_event(
            self.agent, event, STEP_FAILED,
            payload={"reason": f"{self.agent.name}: {call} call failed ({exc.reason}): {exc}"},
            usage=_plus(spent, exc.usage))

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def system_prompt(agent: AgentSpec, event: Envelope) -> str:
    """The agent's persona, led by the trace's shifted prompt when a verdict set one.

    The persona stays after the shift prompt: it defines the output format the agent's routes
    match, so a shifted agent can still end or hand on the work.
    """
    shifted = event.personas.get(agent.name)
    if shifted is None or not shifted.system_prompt:
        return agent.persona
    return f"{shifted.system_prompt}\n\n{agent.persona}"


def temperature(agent: AgentSpec, event: Envelope) -> float | None:
    """The trace's shifted temperature for this agent, else the spec's."""
    shifted = event.personas.get(agent.name)
    if shifted is None or shifted.temperature is None:
        return agent.temperature
    return shifted.temperature


def _tiers(spec: MeshSpec, agent: AgentSpec) -> set[str]:
    """Every tier one of the agent's steps may call."""
    if agent.model != AUTO_TIER:
        tiers = {agent.model}
    elif agent.task_kind is not None:
        tiers = {spec.tier_for(agent)}
    else:
        assert spec.routing is not None  # checked at load time
        tiers = {spec.routing.cheap, spec.routing.premium}
    if agent.context is not None:
        tiers.add(spec.summary_tier(agent))
    return tiers


def _plus(first: Usage, second: Usage) -> Usage:
    """Two calls' usage as one step's: sums, and the later call's model."""
    return Usage(tokens_in=first.tokens_in + second.tokens_in,
                 tokens_out=first.tokens_out + second.tokens_out,
                 cost=first.cost + second.cost,
                 latency_ms=first.latency_ms + second.latency_ms,
                 model=second.model or first.model,
                 calls=first.calls + second.calls)


def for_agent(spec: MeshSpec, agent: AgentSpec) -> Behaviour:
    """The behaviour an agent's ``kind`` (and tools) call for; see docs/ORCHESTRATION.md."""
    if agent.kind == "router":
        from choreo.services.router.behaviour import Router

        return Router(spec, agent)
    if agent.kind == "supervisor":
        from choreo.services.supervisor.behaviour import Supervisor

        return Supervisor(spec, agent)
    if agent.tools:
        from choreo.services.agent.tools import ToolAgent

        return ToolAgent(agent, ModelAgent(spec, agent))
    return ModelAgent(spec, agent)
