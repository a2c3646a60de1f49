"""A route asked for as structured output, where a tier can answer to a JSON schema.

A prompt agent's routes match its free text by patterns (``^APPROVED``), which a small real
model often misses: it answers in prose, and the trace fails with "no route matched". Where the
tier says it can follow a JSON schema (``structured_output``), an agent that has a choice to
make asks for ``{"route": ..., "text": ...}`` with ``route`` an enum of its routes' names, so
the answer names a route by construction (llama.cpp turns the schema into a grammar the model
cannot leave; OpenAI's ``strict`` schemas do the same). ``route`` comes first: an answer cut
by its token limit still names its route. What cannot be read as a choice falls back to the
patterns on the raw text, so nothing routes worse than without it. The design follows how
agent frameworks route on structured output (a schema with an enum of next steps) instead of
parsing prose.
"""

from __future__ import annotations

import json
import re
from typing import Any

from choreo.models.structured import cut_field, schema_format
from choreo.spec.mesh import AgentSpec, Route, StructuredOutput

#: The literal word a pattern such as ``^APPROVED`` or ``^REVISE:`` starts with.
_LEADING_WORD = re.compile(r"^\^\(?(?:\?i\))?([A-Za-z][A-Za-z_-]*)")
_ROUTE_FIELD = re.compile(r'"route"\s*:\s*"([^"\\]*)"')
#: Output tokens for an answer that is a route's name alone.
ROUTE_TOKENS = 24


def route_names(agent: AgentSpec) -> list[str]:
    """One distinct name per route, in order: its ``label``, else the word its pattern starts
    with (``^APPROVED`` → ``APPROVED``), else what it does (``finish``, ``fail``, the event
    type it emits); a repeated name gets the route's number after it."""
    names: list[str] = []
    for number, route in enumerate(agent.routes, 1):
        word = _LEADING_WORD.match(route.when or "")
        action = "finish" if route.finish else "fail" if route.fail else route.emit or "route"
        name = route.label or (word.group(1) if word else action)
        names.append(name if name not in names else f"{name}-{number}")
    return names


def response_format(
    agent: AgentSpec, structured: StructuredOutput | None, *, text: bool = True
) -> dict[str, Any] | None:
    """The request's ``response_format`` for a step of ``agent`` on a tier that takes
    ``structured`` output: an object of ``route`` (an enum of ``route_names``) and, with
    ``text``, the answer's ``text``, in the shape the tier takes. None when there is nothing
    to ask: the tier takes no schema, or the agent has one route or none."""
    if structured is None or len(agent.routes) < 2:
        return None
    fields: dict[str, Any] = {"route": {"type": "string", "enum": route_names(agent)}}
    if text:
        fields["text"] = {"type": "string"}
    schema = {
        "type": "object",
        "properties": fields,
        "required": list(fields),
        "additionalProperties": False,
    }
    return schema_format(structured, "routed_answer", schema)


def asking(agent: AgentSpec, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """``messages`` with the answer's shape named at the end of the system message: models
    follow a schema better when the prompt names it too."""
    names = ", ".join(route_names(agent))
    shape = f'Reply with a JSON object: {{"route": one of {names}, "text": your answer}}.'
    first, *rest = messages
    return [{**first, "content": f"{first['content']}\n\n{shape}"}, *rest]


def asking_route(agent: AgentSpec, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` (a conversation that ended in the agent's answer) and a question for the
    answer's route alone, after a tool conversation whose answer named none."""
    names = ", ".join(route_names(agent))
    question = f'Which route does your answer take? Reply with {{"route": one of {names}}}.'
    return [*messages, {"role": "user", "content": question}]


def read_choice(agent: AgentSpec, answer: str) -> tuple[Route, str] | None:
    """The route an answer names and its text, or None when it names none.

    A whole JSON object is read as such; an answer cut short (its token limit reached inside
    ``text``) still yields its route and the text so far.
    """
    names = route_names(agent)
    try:
        data = json.loads(answer)
        route, text = data["route"], data.get("text", "")
    except (ValueError, TypeError, KeyError):
        found = _ROUTE_FIELD.search(answer)
        if found is None:
            return None
        route, text = found.group(1), cut_field(answer, "text") or ""
    if not isinstance(route, str) or route not in names or not isinstance(text, str):
        return None
    return agent.routes[names.index(route)], text
