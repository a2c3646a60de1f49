"""The model script: ordered reply rules plus fault switches, validated before serving.

A script is data, not code, so the demo and the tests get the same answer for the same
conversation on every run; a bad script fails at load time with the offending field named.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from choreo.models.errors import ScriptError
from choreo.spec import yamlfile
from choreo.spec.mesh import Regex


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class When(_Strict):
    """Regexes searched in the conversation; every one given must match (``re.search``).

    ``system`` is searched in the system messages, ``user`` in the user and assistant ones,
    ``tool`` in the results of the tool calls made so far (``tool`` messages), ``model`` in
    the requested model name.
    """

    system: Regex | None = None
    user: Regex | None = None
    tool: Regex | None = None
    model: Regex | None = None

    def matches(self, system: str, user: str, model: str, tool: str = "") -> bool:
        pairs = ((self.system, system), (self.user, user), (self.model, model), (self.tool, tool))
        return all(pattern is None or re.search(pattern, text) for pattern, text in pairs)


#: How a rule's answer can be broken, as real servers break them (see ``Rule.fault``).
ReplyFault = Literal[
    "lone_surrogate",
    "gzip_lie",
    "trickle",
    "null_content",
    "server_error",
    "stream_cut",
    "stream_stall",
]
#: Whose answers the server copies (docs/MODELS.md, "Providers"): the quirks of its chat
#: answers; Anthropic's Messages API is served at ``/v1/messages`` whatever this says.
ScriptProvider = Literal["openai_compatible", "openai", "azure", "ollama", "vllm", "llamacpp"]


class ScriptedCall(_Strict):
    """A function call the scripted model asks for (OpenAI ``tool_calls`` on the wire);
    ``arguments`` are sent as JSON in the order they are written."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    arguments: dict[str, Any] = Field(default_factory=dict)


class Rule(_Strict):
    """When the conversation matches, answer with ``reply`` (repeated ``repeat`` times, sent
    as ``fault`` says) or ask for ``tool_calls``.

    Faults: ``lone_surrogate`` ends the text with the JSON escape of half an emoji
    (``\\ud83d``); ``gzip_lie`` says ``Content-Encoding: gzip`` over a plain body;
    ``trickle`` sends the body one byte every ``trickle_interval_s``; ``null_content`` answers
    ``content: null`` with the usage still reported; ``server_error`` answers HTTP 500. Two
    break a streamed answer half-way: ``stream_cut`` closes the connection there (no end of
    the chunked body), ``stream_stall`` goes silent there for ``stall_s`` before going on.
    ``reasoning`` is sent beside the answer, as ``reasoning_content`` (llama.cpp, vLLM) or a
    ``thinking`` block (Anthropic).
    """

    when: When = Field(default_factory=When)
    reply: str | None = None
    tool_calls: list[ScriptedCall] | None = Field(None, min_length=1)
    #: The reply is ``reply`` this many times over (a long answer without a long script).
    repeat: int = Field(1, ge=1, le=1_000_000)
    fault: ReplyFault | None = None
    trickle_interval_s: float = Field(0.2, gt=0)
    stall_s: float = Field(30.0, gt=0)
    reasoning: str | None = None

    @model_validator(mode="after")
    def _one_answer(self) -> Rule:
        if (self.reply is None) == (self.tool_calls is None):
            raise ValueError("a rule needs exactly one of reply or tool_calls")
        return self

    @property
    def text(self) -> str:
        return (self.reply or "") * self.repeat


class RateLimit(_Strict):
    """Answer 429 to every ``every``-th chat request, asking the client to wait."""

    every: int = Field(ge=1)
    retry_after: float = Field(1.0, ge=0)


class Faults(_Strict):
    rate_limit: RateLimit | None = None
    down: bool = False
    #: Answer without a ``usage`` object, as some OpenAI-compatible servers do.
    no_usage: bool = False
    #: Request fields answered with HTTP 400, as newer OpenAI models refuse ``temperature``
    #: and ``max_tokens`` (they take ``max_completion_tokens``).
    rejects: list[str] = Field(default_factory=list)


class UsageDetails(_Strict):
    """Token counts reported beside the totals, as part of them: prompt tokens read from and
    written to the provider's cache, and output tokens of hidden reasoning."""

    cached_tokens: int = Field(0, ge=0)
    cache_write_tokens: int = Field(0, ge=0)
    reasoning_tokens: int = Field(0, ge=0)


class Script(_Strict):
    """A whole script. ``model`` is a label: replies say ``scripted:<model>``.

    ``provider`` picks whose quirks its chat answers have: ``ollama`` sends tool calls
    without ids and their arguments as an object, ``llamacpp`` and ``vllm`` send a rule's
    ``reasoning`` as ``reasoning_content``, ``openai`` and ``azure`` refuse ``temperature``
    and ``max_tokens`` for reasoning models (o1, o3, o4-mini, gpt-5) and send rate-limit
    headers. ``usage`` adds cached, cache-write and reasoning counts to every answer's usage.
    """

    model: str = Field(min_length=1, pattern=r"^\S+$")
    provider: ScriptProvider = "openai_compatible"
    usage: UsageDetails = Field(default_factory=UsageDetails)
    latency_ms: float = Field(0.0, ge=0)
    api_key: str | None = None
    rules: list[Rule] = Field(default_factory=list)
    faults: Faults = Field(default_factory=Faults)

    @property
    def label(self) -> str:
        return f"scripted:{self.model}"

    def rule(self, system: str, user: str, model: str, tool: str = "") -> Rule:
        """The first matching rule, or one whose reply says plainly that none matched."""
        for rule in self.rules:
            if rule.when.matches(system, user, model, tool):
                return rule
        return Rule(
            reply=(
                f"[{self.label}] no scripted rule matched this conversation "
                f"(model {model!r}; {len(self.rules)} rules)."
            )
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
