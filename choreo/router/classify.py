"""How a router picks its one route, apart from Kafka and models: rules, and model labels."""

from __future__ import annotations

import json
import re
from typing import Any

from choreo.agent import step as steps
from choreo.models.structured import schema_format
from choreo.schemas import Envelope
from choreo.schemas.codec import as_text
from choreo.spec.mesh import AgentSpec, Route, StructuredOutput

_WORD = re.compile(r"[a-z][a-z0-9_-]*")


def subject(agent: AgentSpec, event: Envelope) -> str:
    """The text a router classifies: the fields it reads (default: the task's input)."""
    state = event.state or {}
    return "\n\n".join(
        as_text(state[name])
        for name in agent.reads or ["input"]
        if state.get(name) not in (None, "")
    )


def by_rules(agent: AgentSpec, text: str) -> Route | None:
    """The first route whose pattern matches the subject; a route with none matches all."""
    return steps.choose_route(agent, text)


def by_label(agent: AgentSpec, answer: str) -> Route | None:
    """The route named by the model's answer: its first word must be one of the labels.

    Anything else (a sentence, an unknown label, an empty answer) is no answer at all, so the
    rules decide instead of a guess.
    """
    words = _WORD.findall(answer.lower())
    if not words:
        return None
    return next((r for r in agent.routes if r.label == words[0]), None)


def instructions(agent: AgentSpec) -> str:
    """The persona plus the one-word answer format the labels call for."""
    labels = ", ".join(r.label for r in agent.routes if r.label)
    return f"{agent.persona}\n\nAnswer with exactly one word, one of: {labels}."


def label_format(agent: AgentSpec, structured: StructuredOutput | None) -> dict[str, Any] | None:
    """The ``response_format`` that holds the model's answer to ``{"label": one of the
    labels}`` on a tier that takes a JSON schema (choreo.models.structured); None where
    the tier takes none."""
    if structured is None:
        return None
    labels = [r.label for r in agent.routes if r.label]
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": labels}},
        "required": ["label"],
        "additionalProperties": False,
    }
    return schema_format(structured, "label", schema)


def answered_label(answer: str) -> str:
    """The label of a structured answer ``{"label": ...}``; the answer itself otherwise, for
    ``by_label`` to read as free text."""
    try:
        label = json.loads(answer)["label"]
    except (ValueError, TypeError, KeyError):
        return answer
    return label if isinstance(label, str) else answer
