"""The OpenAI chat-completions API and the servers that copy it: OpenAI, Azure OpenAI,
Gemini's OpenAI-compatible endpoint, Ollama, vLLM, llama.cpp and any other.

They differ in where the request goes, how the key is sent and which fields a model takes;
their answers share one shape, with quirks read here for every one of them: tool calls without
an ``id`` (filled deterministically, choreo.models.answer.filled_id), ``arguments`` sent as a
JSON object instead of its text, ``reasoning_content`` beside the answer (not part of it),
``prompt_tokens_details.cached_tokens`` and ``completion_tokens_details.reasoning_tokens``.
Shapes follow the providers' API references (OpenAI "Chat Completions", Azure OpenAI "REST
API reference", Gemini "OpenAI compatibility", Ollama "OpenAI compatibility").
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from choreo.models.answer import Message, ToolCall, filled_id
from choreo.models.pricing import Counts
from choreo.schemas.codec import clean_text
from choreo.spec.mesh import ModelTier

#: Models that refuse ``temperature`` (OpenAI's reasoning models): o1, o3, o4-mini, gpt-5...
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


def count(value: Any) -> int | None:
    """A token count from an answer: a non-negative int, else ``None`` (never an exception)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _detail(usage: dict[str, Any], group: str, field: str) -> int:
    details = usage.get(group)
    return (count(details.get(field)) or 0) if isinstance(details, dict) else 0


def _arguments(value: Any) -> str:
    """A tool call's arguments as JSON text: sent as text by OpenAI, as an object by some
    servers (Ollama's native shape), or left out when there are none."""
    if value is None or value == "":
        return "{}"
    if isinstance(value, dict):
        return json.dumps(value)
    if not isinstance(value, str):
        raise TypeError("tool call arguments must be JSON text or an object")
    return value


class ChatProfile:
    """Any OpenAI-compatible server: ``{base_url}/chat/completions`` with a bearer key."""

    #: ``gen_ai.provider.name`` of its spans (OpenTelemetry's names where it has one).
    name = "openai_compatible"
    #: The output-token limit field when the tier does not name one.
    max_tokens_field = "max_tokens"

    def __init__(self, tier: ModelTier, http: httpx.AsyncClient, api_key: str | None) -> None:
        self.http = http
        self.url = self.endpoint(tier)
        self._headers = self.headers(api_key)

    def endpoint(self, tier: ModelTier) -> str:
        assert tier.base_url is not None  # resolved tiers always have one
        return tier.base_url.rstrip("/") + "/chat/completions"

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def sends_temperature(self, tier: ModelTier) -> bool:
        return tier.temperature is not None

    def body(
        self,
        tier: ModelTier,
        messages: list[Message],
        *,
        temperature: float | None,
        max_tokens: int | None,
        tools: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        """The request: ``messages`` and ``tools`` in OpenAI's shape, as the mesh keeps them."""
        body: dict[str, Any] = {"model": tier.model, "messages": messages, "stream": tier.stream}
        if tier.stream:  # the usage comes in a last chunk only when asked for
            body["stream_options"] = {"include_usage": True}
        if self.sends_temperature(tier):
            assert tier.temperature is not None
            body["temperature"] = tier.temperature if temperature is None else temperature
        if max_tokens is not None:
            field = (
                tier.max_tokens_field
                if "max_tokens_field" in tier.model_fields_set
                else self.max_tokens_field
            )
            body[field] = max_tokens
        if tools:
            body["tools"] = tools
            body["tool_choice"] = "auto"  # OpenAI's default, which llama.cpp's server needs said
        return body

    @asynccontextmanager
    async def send(self, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        """The answer to one request, its body not yet read (any status)."""
        async with self.http.stream("POST", self.url, json=body, headers=self._headers) as answer:
            yield answer

    def answer(
        self, payload: dict[str, Any], request: dict[str, Any]
    ) -> tuple[str, tuple[ToolCall, ...]]:
        """The text and tool calls of a chat completion; raises ``KeyError``, ``IndexError``,
        ``TypeError`` or ``ValueError`` when it is not one."""
        message = payload["choices"][0]["message"]
        calls = tuple(
            _tool_call(c, request, i) for i, c in enumerate(message.get("tool_calls") or ())
        )
        text = message.get("content")
        if text is None and calls:  # asking for tools instead of answering
            text = ""
        if not isinstance(text, str):
            raise TypeError(f"message content is {type(text).__name__}, not text")
        return text, calls

    def reply_text(self, payload: dict[str, Any]) -> str:
        """The answer's text if it has any, for estimating its tokens (never raises)."""
        try:
            text = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return ""
        return text if isinstance(text, str) else ""

    def counts(self, payload: dict[str, Any]) -> Counts:
        usage = payload.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return Counts(
            tokens_in=count(usage.get("prompt_tokens")),
            tokens_out=count(usage.get("completion_tokens")),
            cached=_detail(usage, "prompt_tokens_details", "cached_tokens"),
            reasoning=_detail(usage, "completion_tokens_details", "reasoning_tokens"),
        )

    def assembler(self) -> ChatStream:
        return ChatStream()

    async def aclose(self) -> None:
        """Nothing of its own: it sends over the model client's ``http``."""


def _tool_call(data: Any, request: dict[str, Any], index: int) -> ToolCall:
    function = data["function"]
    call_id = data.get("id") or filled_id(request, index)
    if not isinstance(call_id, str) or not isinstance(function["name"], str):
        raise TypeError("tool call id and name must be strings")
    return ToolCall(
        id=clean_text(call_id),
        name=clean_text(function["name"]),
        arguments=clean_text(_arguments(function.get("arguments"))),
    )


class ChatStream:
    """Assembles a streamed chat completion (``chat.completion.chunk`` events) into the
    answer the same request without streaming would have had: text deltas joined, tool
    calls joined by their ``index``, usage from the last chunk (``stream_options:
    include_usage``)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.model: Any = None
        self.finished = False  # a finish_reason was seen
        self.done = False  # the ``[DONE]`` sentinel was seen

    def feed(self, event: str) -> None:
        """One event's data; raises ``ValueError`` on an error event or one not JSON."""
        if event.strip() == "[DONE]":
            self.done = True
            return
        chunk = json.loads(event)
        if not isinstance(chunk, dict):
            raise ValueError("a stream event is not a JSON object")
        if "error" in chunk:
            raise ValueError(f"the stream sent an error: {str(chunk['error'])[:500]}")
        self.model = chunk.get("model", self.model)
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                self.finished = True
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.text.append(delta["content"])
            for i, call in enumerate(delta.get("tool_calls") or ()):
                self._call_delta(call, i)

    def _call_delta(self, call: dict[str, Any], position: int) -> None:
        part = self.calls.setdefault(call.get("index", position), {"function": {"name": ""}})
        if call.get("id"):
            part["id"] = call["id"]
        function = call.get("function") or {}
        if isinstance(function.get("name"), str):
            part["function"]["name"] += function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # an object in one piece
            part["function"]["arguments"] = arguments
        elif isinstance(arguments, str):
            part["function"]["arguments"] = part["function"].get("arguments", "") + arguments

    def complete(self) -> bool:
        """Whether the stream ended as a whole answer does (some servers send no ``[DONE]``
        after the finish reason)."""
        return self.done or self.finished

    def payload(self) -> dict[str, Any]:
        """What arrived so far, as a non-streamed chat completion."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) or None}
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        elif message["content"] is None:
            message["content"] = ""
        payload: dict[str, Any] = {"choices": [{"index": 0, "message": message}]}
        if self.usage is not None:
            payload["usage"] = self.usage
        if self.model is not None:
            payload["model"] = self.model
        return payload


class OpenAIProfile(ChatProfile):
    """OpenAI's own API: ``max_completion_tokens`` (``max_tokens`` is deprecated and refused
    by reasoning models), and no temperature for reasoning models, which refuse one."""

    name = "openai"
    max_tokens_field = "max_completion_tokens"

    def sends_temperature(self, tier: ModelTier) -> bool:
        return tier.temperature is not None and not _REASONING_MODEL.match(tier.model)


class AzureProfile(OpenAIProfile):
    """Azure OpenAI: the deployment in the path, ``api-version`` in the query, the key in an
    ``api-key`` header (``base_url`` is the resource, ``https://NAME.openai.azure.com``)."""

    name = "azure.ai.openai"

    def endpoint(self, tier: ModelTier) -> str:
        assert tier.base_url is not None
        return (
            f"{tier.base_url.rstrip('/')}/openai/deployments/{tier.azure_deployment}"
            f"/chat/completions?api-version={tier.api_version}"
        )

    def headers(self, api_key: str | None) -> dict[str, str]:
        return {"api-key": api_key} if api_key else {}


class GeminiProfile(ChatProfile):
    """Gemini's OpenAI-compatible endpoint
    (``https://generativelanguage.googleapis.com/v1beta/openai``)."""

    name = "gcp.gemini"


class OllamaProfile(ChatProfile):
    name = "ollama"


class VLLMProfile(ChatProfile):
    name = "vllm"


class LlamaCppProfile(ChatProfile):
    name = "llamacpp"
