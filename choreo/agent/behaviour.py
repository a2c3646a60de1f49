"""What an agent does with one event, apart from Kafka: the pluggable part of a worker.

The consumer loop (choreo.agent.service) owns delivery, budgets, commits and draining; a
behaviour only turns an event into outbox records. The default behaviour asks a model (and,
with tools, runs the model's tool calls: choreo.tools.loop); a python agent runs the user's
function (choreo.agent.python); the router and supervisor plug in their own
(choreo.agent.kinds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from choreo.agent import routing
from choreo.agent import step as steps
from choreo.budget.left import left, plus
from choreo.budget.tokens import estimate_tokens
from choreo.models import context
from choreo.models.client import ModelClient, ModelError
from choreo.observe.settings import get_settings
from choreo.schemas import Envelope, Usage
from choreo.schemas.records import STEP_FAILED, STEP_REFUSED
from choreo.spec.mesh import AUTO_TIER, AgentSpec, MeshSpec, Route

if TYPE_CHECKING:
    from choreo.tools.loop import Conversation


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

    def __init__(
        self, spec: MeshSpec, agent: AgentSpec, max_reply_bytes: int | None = None
    ) -> None:
        """``max_reply_bytes`` defaults to the process settings' (``CHOREO_MAX_REPLY_BYTES``)."""
        self.spec = spec
        self.agent = agent
        self.max_reply_bytes = (
            get_settings().max_reply_bytes if max_reply_bytes is None else max_reply_bytes
        )
        self.clients = {
            name: ModelClient.for_tier(name, spec.models[name])
            for name in sorted(_tiers(spec, agent))
        }
        self.toolbox = None
        if agent.called_tools:
            from choreo.tools.loop import ToolBox

            self.toolbox = ToolBox(agent, spec.python_path)
            self.toolbox.warm()  # MCP servers listed at start-up, not at the first task

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
        if self.toolbox is not None:
            return [await self._with_tools(event, client, messages, writes, spent)]
        shape = routing.response_format(self.agent, client.tier.structured_output)
        try:
            completion = await client.complete(
                messages if shape is None else routing.asking(self.agent, messages),
                agent=self.agent.name,
                temperature=temperature(self.agent, event),
                max_tokens=self.agent.max_tokens,
                deadline=event.budget.deadline,
                response_format=shape,
            )
        except ModelError as exc:
            return [self._failed(event, "model", exc, spent)]
        choice = None if shape is None else routing.read_choice(self.agent, completion.text)
        chosen, answer = choice or (None, completion.text)
        text, cut = steps.fit_reply(answer, self.max_reply_bytes)
        usage = plus(spent, completion.usage)
        out = steps.outcome(self.agent, event, text, usage, messages, cut, chosen)
        return [_with_writes(out, writes, estimated)]

    async def _with_tools(
        self,
        event: Envelope,
        client: ModelClient,
        messages: list[dict[str, str]],
        writes: dict[str, Any],
        spent: Usage,
    ) -> Envelope:
        """The step as a model ↔ tool conversation (choreo.tools.loop); its calls go in
        the payload's ``tool_calls``, for the hop record."""
        from choreo.tools.loop import ToolSetupError, converse

        assert self.toolbox is not None
        try:
            await self.toolbox.start()
        except ToolSetupError as exc:
            return steps.step_event(
                self.agent,
                event,
                STEP_FAILED,
                usage=spent,
                payload={"reason": f"{self.agent.name}: tools unavailable: {exc}"},
            )
        talk = await converse(
            client,
            messages,
            self.toolbox.for_step(event.state or {}),
            agent=self.agent,
            left=lambda used: left(event, used),
            temperature=temperature(self.agent, event),
            deadline=event.budget.deadline,
            spent=spent,
            max_tools=self.spec.models[client.name].max_tools,
        )
        calls = msgspec.to_builtins(talk.calls)
        notes = self.toolbox.notes + talk.notes
        if talk.completion is None:
            event_type = STEP_REFUSED if talk.refused else STEP_FAILED
            reason = talk.refused or talk.error
            failed = steps.step_event(
                self.agent,
                event,
                event_type,
                usage=talk.usage,
                payload={"reason": f"{self.agent.name}: {reason}", "tool_calls": calls},
            )
            _noted(failed, notes)
            return failed
        chosen, usage = await self._route_after_tools(event, client, talk)
        text, cut = steps.fit_reply(talk.completion.text, self.max_reply_bytes)
        out = steps.outcome(self.agent, event, text, usage, messages, cut, chosen)
        out.payload["tool_calls"] = calls
        _noted(out, notes)
        return _with_writes(out, writes, estimate_tokens(messages))

    async def _fit(self, event: Envelope) -> tuple[list[dict[str, str]], dict[str, Any], Usage]:
        """The step's messages within the context budget, the summary writes (if a fold was
        needed) and the summarizer's usage."""
        ctx = self.agent.context
        if ctx is None:
            return (
                steps.render_messages(self.agent, event, system_prompt(self.agent, event)),
                {},
                Usage(),
            )
        state = event.state or {}
        visible = context.visible_state(ctx, state)
        names = context.reads(ctx, steps.read_names(self.agent, visible))
        messages = steps.render_fields(system_prompt(self.agent, event), names, visible)
        older = context.older_items(ctx, visible)
        if estimate_tokens(messages) <= ctx.max_input_tokens or not older:
            return messages, {}, Usage()  # within budget, or nothing old enough to fold
        summarizer = self.clients[self.spec.summary_tier(self.agent)]
        completion = await summarizer.complete(
            context.summarizer_messages(ctx, visible, older),
            agent=self.agent.name,
            temperature=0.0,
            deadline=event.budget.deadline,
        )
        visible, writes = context.fold(ctx, state, visible, older, completion.text.strip())
        messages = steps.render_fields(system_prompt(self.agent, event), names, visible)
        return messages, writes, completion.usage

    def _failed(self, event: Envelope, call: str, exc: ModelError, spent: Usage) -> Envelope:
        """A failed step: the trace ends ``failed`` with why, and what was spent (the
        failed call's billed tokens too) is counted."""
        return steps.step_event(
            self.agent,
            event,
            STEP_FAILED,
            payload={"reason": f"{self.agent.name}: {call} call failed ({exc.reason}): {exc}"},
            usage=plus(spent, exc.usage),
        )

    async def aclose(self) -> None:
        if self.toolbox is not None:
            await self.toolbox.aclose()
        for client in self.clients.values():
            await client.aclose()

    async def _route_after_tools(
        self, event: Envelope, client: ModelClient, talk: Conversation
    ) -> tuple[Route | None, Usage]:
        """The route of a tool conversation's answer, asked for as structured output when its
        text matches no pattern of its own (only a catch-all route, or none) and the tier can
        take a schema; the answer's text stays as it is. Returns the route (None: the
        patterns decide) and the step's usage with that call's."""
        assert talk.completion is not None
        text = talk.completion.text
        shape = routing.response_format(self.agent, client.tier.structured_output, text=False)
        matched = steps.choose_route(self.agent, text)
        if shape is None or (matched is not None and matched.when is not None):
            return None, talk.usage
        if left(event, talk.usage).exhausted() is not None:
            return None, talk.usage
        try:
            completion = await client.complete(
                routing.asking_route(
                    self.agent, [*talk.messages, {"role": "assistant", "content": text}]
                ),
                agent=self.agent.name,
                temperature=temperature(self.agent, event),
                max_tokens=routing.ROUTE_TOKENS,
                deadline=event.budget.deadline,
                response_format=shape,
            )
        except ModelError as exc:
            return None, plus(talk.usage, exc.usage)
        choice = routing.read_choice(self.agent, completion.text)
        return (choice[0] if choice else None), plus(talk.usage, completion.usage)


def _noted(out: Envelope, notes: list[str]) -> None:
    """Notes on the tools the step offered (renamed, left out, capped), for its hop record."""
    if notes:
        out.payload["notes"] = notes


def _with_writes(out: Envelope, writes: dict[str, Any], estimated: int) -> Envelope:
    """The step's record with the context budget's writes (a summary) joined in."""
    if writes and out.delta is not None:
        out.delta = {**writes, **out.delta}  # the agent's own writes win
        out.payload["context"] = {"summarized": True, "estimated_tokens": estimated}
    return out


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
