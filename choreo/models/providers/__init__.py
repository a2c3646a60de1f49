"""Provider profiles: how a tier's provider is called and how its answers read.

A profile builds the request body from the mesh's conversation (OpenAI's message shape),
sends it, and reads the answer back as text, tool calls and ``Counts``, whole or streamed
(its ``assembler``). The model client (choreo.models.client) keeps everything else: retries,
limits, the circuit, deadlines and accounting, the same for every provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import httpx

from choreo.models.answer import Message, ToolCall
from choreo.models.pricing import Counts
from choreo.models.providers.openai import (
    AzureProfile,
    ChatProfile,
    GeminiProfile,
    LlamaCppProfile,
    OllamaProfile,
    OpenAIProfile,
    VLLMProfile,
)
from choreo.spec.mesh import ModelTier


class Reply(Protocol):
    """An HTTP answer as the model client reads it (``httpx.Response`` is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def is_success(self) -> bool: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...


class Assembler(Protocol):
    """Joins a streamed answer's events into the answer's non-streamed payload."""

    def feed(self, event: str) -> None:
        """One server-sent event's data; ``ValueError`` when it is an error or garbled."""

    def complete(self) -> bool:
        """Whether the stream has ended as a whole answer does."""

    def payload(self) -> dict[str, Any]:
        """What arrived so far, shaped as the provider's non-streamed answer."""


class Profile(Protocol):
    """One provider's side of a call (see the module docstring)."""

    name: str
    url: str

    def body(
        self,
        tier: ModelTier,
        messages: list[Message],
        *,
        temperature: float | None,
        max_tokens: int | None,
        tools: list[dict[str, Any]] | None,
    ) -> dict[str, Any]: ...

    def send(self, body: dict[str, Any]) -> AbstractAsyncContextManager[Reply]:
        """The answer to one request, its body not yet read (any status); transport errors
        are ``httpx``'s."""

    def answer(
        self, payload: dict[str, Any], request: dict[str, Any]
    ) -> tuple[str, tuple[ToolCall, ...]]:
        """Text and tool calls; ids missing from the answer are made from ``request``."""

    def reply_text(self, payload: dict[str, Any]) -> str: ...

    def counts(self, payload: dict[str, Any]) -> Counts: ...

    def assembler(self) -> Assembler: ...

    async def aclose(self) -> None:
        """Release what the profile holds of its own (the model client closes ``http``)."""


_CHAT: dict[str, type[ChatProfile]] = {
    "openai_compatible": ChatProfile,
    "openai": OpenAIProfile,
    "azure": AzureProfile,
    "gemini": GeminiProfile,
    "ollama": OllamaProfile,
    "vllm": VLLMProfile,
    "llamacpp": LlamaCppProfile,
}


def profile_for(tier: ModelTier, http: httpx.AsyncClient, api_key: str | None) -> Profile:
    """The profile of ``tier.provider``, sending over ``http``, its tool calls prompted when
    the tier says so (choreo.models.providers.prompted); raises ``ModelConfigError`` for an
    Anthropic tier when the ``anthropic`` SDK is not installed."""
    profile: Profile
    if tier.provider == "anthropic":
        from choreo.models.providers.anthropic import AnthropicProfile

        profile = AnthropicProfile(tier, http, api_key)
    else:
        profile = _CHAT[tier.provider](tier, http, api_key)
    if tier.tool_calls == "prompted":
        from choreo.models.providers.prompted import PromptedTools

        profile = PromptedTools(profile, tier)
    return profile
