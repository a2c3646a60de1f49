"""The scripted server's Anthropic Messages API (``POST /v1/messages``): the request checked
as Anthropic checks it, and the answer in its shape, whole or as its stream of events.

Shapes follow Anthropic's "Messages" and "Streaming Messages" API references: ``system`` is a
top-level field (a ``system`` role in ``messages`` is refused), ``max_tokens`` is required,
every ``tool_result`` answers a ``tool_use`` of the assistant turn before it, and usage counts
``input_tokens`` apart from ``cache_read_input_tokens`` and ``cache_creation_input_tokens``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from choreo.model_server.script import Rule, Script


class BadMessages(ValueError):
    """The request is no Messages request; the message is Anthropic's kind of 400."""


def _words(text: str) -> int:
    return len(text.split())


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        return str(block["text"])
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return "\n".join(_block_text(b) for b in content if isinstance(b, dict))
        return content if isinstance(content, str) else ""
    if kind == "tool_use":
        return ""
    raise BadMessages(f"unknown content block type {kind!r}")


def parse_messages(body: bytes) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    """The requested model, the conversation as (role, text) pairs (``system``, ``user``,
    ``assistant``, ``tool`` for tool results) and the request; raises ``BadMessages``."""
    try:
        request = json.loads(body)
    except ValueError as exc:
        raise BadMessages(f"body is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadMessages("body must be a JSON object")
    if not isinstance(request.get("max_tokens"), int):
        raise BadMessages("max_tokens: Field required")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadMessages("messages: at least one message is required")
    system = request.get("system", "")
    parsed = [("system", system if isinstance(system, str) else "")] if system else []
    offered: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            raise BadMessages(
                f"messages.{i}.role: Input should be 'user' or 'assistant' (system prompts "
                "go in the top-level system field)"
            )
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list):
            raise BadMessages(f"messages.{i}.content: must be text or a list of blocks")
        for block in blocks:
            if not isinstance(block, dict):
                raise BadMessages(f"messages.{i}.content: blocks must be objects")
            if block.get("type") == "tool_result" and block.get("tool_use_id") not in offered:
                raise BadMessages(
                    f"messages.{i}: unexpected `tool_use_id` {block.get('tool_use_id')!r} in "
                    "`tool_result` blocks: each must answer a `tool_use` block of the "
                    "previous message"
                )
            text = _block_text(block)
            parsed.append(("tool" if block.get("type") == "tool_result" else role, text))
        offered = {
            str(b.get("id")) for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"
        }
    model = request.get("model")
    return (model if isinstance(model, str) else ""), parsed, request


def message(
    script: Script, rule: Rule, body: bytes, messages: list[tuple[str, str]]
) -> dict[str, Any]:
    """The Message that ``rule`` answers with (a pure function of script and request)."""
    digest = hashlib.sha256(body).hexdigest()
    content: list[dict[str, Any]] = []
    if rule.reasoning is not None:
        content.append({"type": "thinking", "thinking": rule.reasoning, "signature": digest[:32]})
    if rule.tool_calls is None:
        content.append({"type": "text", "text": rule.text})
        output, stop = _words(rule.text), "end_turn"
    else:
        for i, call in enumerate(rule.tool_calls):
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{digest[:20]}{i}",
                    "name": call.name,
                    "input": call.arguments,
                }
            )
        output = sum(_words(json.dumps(c.arguments)) + 1 for c in rule.tool_calls)
        stop = "tool_use"
    prompt = sum(_words(text) for _, text in messages)
    details = script.usage
    read = min(details.cached_tokens, prompt)
    written = min(details.cache_write_tokens, prompt - read)
    answer: dict[str, Any] = {
        "id": "msg_scripted_" + digest[:24],
        "type": "message",
        "role": "assistant",
        "model": script.label,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
    }
    if not script.faults.no_usage:
        answer["usage"] = {
            "input_tokens": prompt - read - written,
            "output_tokens": output,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": written,
        }
    return answer


def message_events(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """``answer`` as the stream of events Anthropic sends for it (each has its ``type``)."""
    usage = answer.get("usage")
    start = {**answer, "content": [], "stop_reason": None}
    if usage is not None:  # the output count comes at the end
        start["usage"] = {**usage, "output_tokens": 1}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(answer["content"]):
        if block["type"] == "text":
            first: dict[str, Any] = {"type": "text", "text": ""}
            words = block["text"].split(" ")
            deltas = [
                {"type": "text_delta", "text": w if i == 0 else " " + w}
                for i, w in enumerate(words)
            ]
        elif block["type"] == "tool_use":
            first = {**block, "input": {}}
            arguments = json.dumps(block["input"])
            half = len(arguments) // 2
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in (arguments[:half], arguments[half:])
            ]
        else:
            first = {**block, "thinking": ""}
            deltas = [{"type": "thinking_delta", "thinking": block["thinking"]}]
        events.append({"type": "content_block_start", "index": index, "content_block": first})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": answer["stop_reason"], "stop_sequence": None},
    }
    if usage is not None:
        delta["usage"] = {"output_tokens": usage["output_tokens"]}
    events += [delta, {"type": "message_stop"}]
    return events
