"""One agent step, without Kafka: prompt from state, model call, route and delta.

Kept apart from the consumer loop so the step's logic reads as what an agent *does*: it never
writes state, it returns a delta and names the event type its output becomes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from choreo.schemas import Envelope, Usage
from choreo.schemas.codec import as_text, cut_text, to_json
from choreo.schemas.ids import derive_event_id, fingerprint
from choreo.schemas.records import FAIL, FINISH, STEP_FAILED
from choreo.spec.mesh import AgentSpec, Route


def render_messages(
    agent: AgentSpec, event: Envelope, system_prompt: str | None = None
) -> list[dict[str, str]]:
    """The chat for this step: persona as system, then the state fields the agent reads."""
    state = event.state or {}
    return render_fields(system_prompt or agent.persona, read_names(agent, state), state)


def read_names(agent: AgentSpec, state: Mapping[str, Any]) -> list[str]:
    """The state fields an agent's prompt shows: its ``reads``, else every field."""
    return list(agent.reads) if agent.reads is not None else list(state)


def render_fields(
    system: str, names: Iterable[str], state: Mapping[str, Any]
) -> list[dict[str, str]]:
    """A system message, then one section per named field that has a value, in that order."""
    sections = [
        f"## {name}\n{as_text(state[name])}"
        for name in names
        if state.get(name) not in (None, "", [], {})
    ]
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "\n\n".join(sections) or "(empty state)"},
    ]


def over_budget(event: Envelope, now: datetime) -> str | None:
    """Why this step must not run, judged from the event alone (works with no watchdog)."""
    budget = event.budget
    if budget.max_hops is not None and event.hop + 1 > budget.max_hops:
        return f"hop budget exhausted: step would be hop {event.hop + 1} of {budget.max_hops}"
    if budget.deadline is not None and now > budget.deadline:
        return f"deadline passed at {budget.deadline.isoformat()}"
    return None


def choose_route(agent: AgentSpec, text: str) -> Route | None:
    """The first route whose pattern matches the output (a route with no pattern always does)."""
    for route in agent.routes:
        if route.when is None or re.search(route.when, text):
            return route
    return None


def build_delta(agent: AgentSpec, route: Route, text: str, event: Envelope) -> dict[str, Any]:
    """The agent's and the route's writes with ``{output}``, ``{agent}``, ``{hop}`` filled in."""
    values = {"output": text, "agent": agent.name, "hop": event.hop + 1}
    return {
        field: template.format_map(values) if isinstance(template, str) else template
        for field, template in {**agent.writes, **route.writes}.items()
    }


def step_event(
    agent: AgentSpec,
    event: Envelope,
    event_type: str,
    *,
    delta: dict[str, Any] | None = None,
    payload: dict[str, Any] | None = None,
    usage: Usage | None = None,
    index: int = 0,
) -> Envelope:
    """Output ``index`` of a step. Its id derives from the cause, so a rerun repeats it.

    A step with several outputs (a supervisor's parallel assignments) numbers them, and only
    one of them should carry the step's usage, so totals count each model call once.
    """
    return Envelope(
        event_id=derive_event_id(event.event_id, agent.name, index),
        trace_id=event.trace_id,
        causation_id=event.event_id,
        type=event_type,
        source=agent.name,
        hop=event.hop + 1,
        budget=event.budget,
        state_version=event.state_version,
        delta=delta,
        payload=payload or {},
        usage=usage or Usage(),
        created_at=datetime.now(UTC),
    )


def fit_reply(text: str, limit_bytes: int) -> tuple[str, dict[str, int] | None]:
    """The reply cut to ``limit_bytes`` of UTF-8 with a visible note at its end, and what was
    cut (None when it fits): a reply too large for one record must not strand its trace."""
    kept, size = cut_text(text, limit_bytes)
    if size <= limit_bytes:
        return text, None
    note = {"reply_bytes": size, "kept_bytes": len(kept.encode("utf-8"))}
    return f"{kept}\n[cut: the reply was {size} bytes, {note['kept_bytes']} kept]", note


def outcome(
    agent: AgentSpec,
    event: Envelope,
    text: str,
    usage: Usage,
    messages: list[dict[str, str]],
    cut: dict[str, int] | None = None,
    chosen: Route | None = None,
) -> Envelope:
    """Turn the model's text into the step's outbox record; ``cut`` notes a cut reply.

    ``chosen`` is the route the model named as structured output (choreo.agent.routing);
    without one, the routes' patterns choose from the text."""
    payload: dict[str, Any] = {"text": text, "input_fingerprint": fingerprint(to_json(messages))}
    if cut is not None:
        payload["cut"] = cut
    route = chosen or choose_route(agent, text)
    if chosen is not None:
        payload["routed_by"] = "structured output"
    if route is None:
        payload["reason"] = f"{agent.name}: no route matched the output"
        return step_event(agent, event, STEP_FAILED, payload=payload, usage=usage)
    if route.finish:
        payload["output_field"] = route.output
        event_type = FINISH
    elif route.fail:
        payload["reason"] = f"{agent.name} ended the trace as failed: {text[:200]}"
        event_type = FAIL
    else:
        event_type = route.emit or STEP_FAILED
    return step_event(
        agent,
        event,
        event_type,
        delta=build_delta(agent, route, text, event),
        payload=payload,
        usage=usage,
    )
