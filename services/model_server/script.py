"""The model script: ordered reply rules plus fault switches, validated before serving.

A script is data, not code, so the demo and the tests get the same answer for the same
conversation on every run; a bad script fails at load time with the offending field named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from choreo.services.runtime import yamlfile
from choreo.services.runtime.spec import Regex


class ScriptError(ValueError):
    """The model script is missing or invalid; the message names the file and each bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class When(_Strict):
    """Regexes searched in the conversation; every one given must match (``re.search``)."""

    system: Regex | None = None
    user: Regex | None = None
    model: Regex | None = None

    def matches(self, system: str, user: str, model: str) -> bool:
        pairs = ((self.system, system), (self.user, user), (self.model, model))
        return all(pattern is None or re.search(pattern, text) for pattern, text in pairs)


class Rule(_Strict):
    when: When = Field(default_factory=When)
    reply: str


class RateLimit(_Strict):
    """Answer 429 to every ``every``-th chat request, asking the client to wait."""

    every: int = Field(ge=1)
    retry_after: float = Field(1.0, ge=0)


class Faults(_Strict):
    rate_limit: RateLimit | None = None
    down: bool = False
    #: Request fields answered with HTTP 400, as newer OpenAI models refuse ``temperature``
    #: and ``max_tokens`` (they take ``max_completion_tokens``).
    rejects: list[str] = Field(default_factory=list)


class Script(_Strict):
    """A whole script. ``model`` is a label: replies say ``scripted:<model>``."""

    model: str = Field(min_length=1, pattern=r"^\S+$")
    latency_ms: float = Field(0.0, ge=0)
    api_key: str | None = None
    rules: list[Rule] = Field(default_factory=list)
    faults: Faults = Field(default_factory=Faults)

    @property
    def label(self) -> str:
        return f"scripted:{self.model}"

    def reply(self, system: str, user: str, model: str) -> str:
        """The first matching rule's reply, or a reply that says plainly that none matched."""
        for rule in self.rules:
            if rule.when.matches(system, user, model):
                return rule.reply
        return (
            f"[{self.label}] no scripted rule matched this conversation "
            f"(model {model!r}; {len(self.rules)} rules)."
        )


def parse_script(data: Any, source: str = "<script>") -> Script:
    try:
        return Script.model_validate(data)
    except ValidationError as exc:
        raise ScriptError(yamlfile.describe(source, "model script", exc)) from None


def load_script(path: str | Path) -> Script:
    """Load and validate a model script from a YAML file."""
    path = Path(path)
    data = yamlfile.read(path, "model script", ScriptError)
    return parse_script(data, str(path))
