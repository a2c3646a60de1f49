"""Anthropic's Messages API, called through the official ``anthropic`` SDK.

The mesh keeps conversations in OpenAI's shape (choreo.models.answer.Message); this profile
turns them into a Messages request (system prompts into the ``system`` field, an assistant's
tool calls into ``tool_use`` blocks, tool results into ``tool_result`` blocks of one user
turn, tools as ``input_schema``) and reads the answer back: text blocks joined, ``tool_use``
blocks as tool calls, ``thinking`` blocks left out, ``usage.cache_read_input_tokens`` and
``cache_creation_input_tokens`` counted apart (Anthropic's ``input_tokens`` excludes both).
Shapes follow Anthropic's "Messages" and "Streaming Messages" API references.

The SDK sends the request (its headers, ``anthropic-version`` and key), with its retries and
timeouts off: retries, limits, the circuit and every time bound are the model client's. The
SDK (2.x) has an HTTP client of its own (``httpx2``); its answers and errors are handed to the
model client as those of ``httpx``, which it handles (``_Answer``). It is imported only when
an Anthropic tier is called, so ``import choreo`` never loads it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from choreo.models.answer import Message, ToolCall, filled_id
from choreo.models.errors import ModelConfigError
from choreo.models.pricing import Counts
from choreo.models.providers.openai import count
from choreo.schemas.codec import clean_text
from choreo.spec.mesh import ModelTier

#: The Messages API requires an output limit; the one sent when the agent gives none.
DEFAULT_MAX_TOKENS = 4096


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return [{"type": "text", "text": content}] if content else []


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):  # the model's own bad arguments, sent back as they were
        arguments = {"arguments": function.get("arguments")}
    return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": arguments}


def messages_request(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """``messages`` in OpenAI's shape as the Messages API's ``system`` text and turns
    (consecutive turns of one role merged, as the API wants them alternating)."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content")
        if role in ("system", "developer"):
            system.append(content if isinstance(content, str) else "")
            continue
        if role == "tool":
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message["tool_call_id"],
                    "content": content if isinstance(content, str) else json.dumps(content),
                }
            ]
            role = "user"
        else:
            blocks = _blocks(content)
            blocks += [_tool_use(c) for c in message.get("tool_calls") or ()]
            role = "assistant" if role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks
        else:
            turns.append({"role": role, "content": blocks})
    return "\n\n".join(s for s in system if s), turns


def _sdk(tier: ModelTier, api_key: str | None) -> Any:
    """The SDK's client for ``tier``; ``ModelConfigError`` without the SDK."""
    try:
        import anthropic  # only Anthropic tiers load it
    except ImportError:
        raise ModelConfigError(
            f"model {tier.model!r} is served by Anthropic, whose SDK is not installed: "
            "pip install 'choreo-mesh[anthropic]'"
        ) from None
    assert tier.base_url is not None
    return anthropic.AsyncAnthropic(
        api_key=api_key or "unset",
        base_url=tier.base_url.rstrip("/").removesuffix("/v1"),
        max_retries=0,
        timeout=None,  # the model client bounds every attempt itself
        default_headers={"User-Agent": "choreo-mesh"},
    )


class _Answer:
    """The SDK's HTTP answer as the model client reads one: status, headers and body, whose
    read errors become ``httpx``'s (a cut or stalled stream is then told apart as for every
    provider)."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self.status_code: int = response.status_code
        self.is_success: bool = response.is_success
        self.headers: Mapping[str, str] = response.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        import httpx2  # the SDK's HTTP client, there when the SDK is

        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx2.TimeoutException as exc:
            raise httpx.ReadTimeout(str(exc)) from None
        except httpx2.DecodingError as exc:
            raise httpx.DecodingError(str(exc)) from None
        except httpx2.TransportError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None


class AnthropicProfile:
    """Anthropic's native API (its OpenAI-compatible endpoint is documented as not for
    production use); ``base_url`` is ``https://api.anthropic.com``."""

    name = "anthropic"

    def __init__(self, tier: ModelTier, http: httpx.AsyncClient, api_key: str | None) -> None:
        assert tier.base_url is not None  # resolved tiers always have one
        # the SDK adds the /v1 itself; a base_url written with it (as chat URLs are) is the same
        root = tier.base_url.rstrip("/").removesuffix("/v1")
        self.url = root + "/v1/messages"
        self._sdk = _sdk(tier, api_key)

    def body(
        self,
        tier: ModelTier,
        messages: list[Message],
        *,
        temperature: float | None,
        max_tokens: int | None,
        tools: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        # no temperature: the SDK (2.x) takes none, as Anthropic's current models use none
        system, turns = messages_request(messages)
        body: dict[str, Any] = {
            "model": tier.model,
            "messages": turns,
            "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
            "stream": tier.stream,
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [
                {
                    "name": t["function"]["name"],
                    "description": t["function"].get("description", ""),
                    "input_schema": t["function"].get("parameters")
                    or {"type": "object", "properties": {}},
                }
                for t in tools
            ]
        return body

    @asynccontextmanager
    async def send(self, body: dict[str, Any]) -> AsyncIterator[_Answer]:
        """The answer to one request, its body not yet read (any status), sent by the SDK.
        The SDK's own errors become the HTTP client's, which the model client handles."""
        import anthropic

        try:
            async with self._sdk.messages.with_streaming_response.create(**body) as raw:
                yield _Answer(raw.http_response)
                return
        except anthropic.APIStatusError as exc:
            error = exc.response
        except anthropic.APITimeoutError:
            raise httpx.ReadTimeout("the request timed out") from None
        except anthropic.APIConnectionError as exc:
            raise httpx.ConnectError(str(exc.__cause__ or exc)) from None
        yield _Answer(error)

    def answer(
        self, payload: dict[str, Any], request: dict[str, Any]
    ) -> tuple[str, tuple[ToolCall, ...]]:
        content = payload["content"]
        if not isinstance(content, list):
            raise TypeError("content is not a list of blocks")
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in content:
            if block["type"] == "text":
                if not isinstance(block["text"], str):
                    raise TypeError("a text block's text is not text")
                text.append(block["text"])
            elif block["type"] == "tool_use":
                arguments = block.get("input")
                name = block["name"]
                if not isinstance(name, str) or not isinstance(arguments, dict | str | None):
                    raise TypeError("a tool_use block needs a name and an input object")
                calls.append(
                    ToolCall(
                        id=clean_text(block.get("id") or filled_id(request, len(calls))),
                        name=clean_text(name),
                        arguments=clean_text(
                            arguments if isinstance(arguments, str) else json.dumps(arguments or {})
                        ),
                    )
                )
        return "".join(text), tuple(calls)

    def reply_text(self, payload: dict[str, Any]) -> str:
        content = payload.get("content")
        if not isinstance(content, list):
            return ""
        return "".join(
            b["text"]
            for b in content
            if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        )

    def counts(self, payload: dict[str, Any]) -> Counts:
        usage = payload.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        fresh = count(usage.get("input_tokens"))
        read = count(usage.get("cache_read_input_tokens")) or 0
        written = count(usage.get("cache_creation_input_tokens")) or 0
        return Counts(
            tokens_in=None if fresh is None else fresh + read + written,
            tokens_out=count(usage.get("output_tokens")),
            cached=read,
            cache_write=written,
        )

    def assembler(self) -> MessageStream:
        return MessageStream()

    async def aclose(self) -> None:
        """Close the SDK's connection pool."""
        await self._sdk.close()


class MessageStream:
    """Assembles a streamed Message (``message_start``, ``content_block_*``,
    ``message_delta``, ``message_stop``) into the Message the same request without streaming
    would have had."""

    def __init__(self) -> None:
        self.message: dict[str, Any] = {"content": []}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.json_parts: dict[int, list[str]] = {}
        self.done = False

    def feed(self, event: str) -> None:
        data = json.loads(event)
        if not isinstance(data, dict):
            raise ValueError("a stream event is not a JSON object")
        kind = data.get("type")
        if kind == "error":
            raise ValueError(f"the stream sent an error: {str(data.get('error'))[:500]}")
        if kind == "message_start":
            self.message = {**data["message"], "content": []}
        elif kind == "content_block_start":
            self.blocks[data["index"]] = dict(data["content_block"])
        elif kind == "content_block_delta":
            block, delta = self.blocks[data["index"]], data["delta"]
            if delta.get("type") == "text_delta":
                block["text"] = block.get("text", "") + delta["text"]
            elif delta.get("type") == "input_json_delta":
                self.json_parts.setdefault(data["index"], []).append(delta["partial_json"])
        elif kind == "message_delta":
            usage = {**(self.message.get("usage") or {}), **(data.get("usage") or {})}
            self.message["usage"] = usage
        elif kind == "message_stop":
            self.done = True

    def complete(self) -> bool:
        return self.done

    def payload(self) -> dict[str, Any]:
        blocks = []
        for index in sorted(self.blocks):
            block = dict(self.blocks[index])
            if index in self.json_parts:
                joined = "".join(self.json_parts[index])
                try:
                    block["input"] = json.loads(joined) if joined else {}
                except ValueError:
                    block["input"] = joined  # the model's own bad JSON, passed on as text
            blocks.append(block)
        return {**self.message, "content": blocks}
