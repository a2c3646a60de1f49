"""Tool calls asked for as a JSON answer, for servers whose own function calling a model cannot
use well (a tier's ``tool_calls: prompted``).

Measured on llama-cpp-python 0.3's ``chatml-function-calling`` format with SmolLM2-135M: its
prompt template escapes the conversation as HTML (every quote of a JSON state reaches the
model as ``&#34;``, and the model writes them back), a plain answer is generated without the
request's ``max_tokens``, and the model wrote its calls as prose (``functions.order_total:
{...}``) that no route could read. Here, instead, the tools are described in the system
prompt and the answer is held to a JSON schema (the tier's ``structured_output``): for each
tool offered, ``{"tool": its name, "arguments": its parameters}``, or ``{"answer": text}``.
A server that turns the schema into a grammar (llama.cpp) makes every answer one of those,
its arguments valid against the tool's parameters. Past calls and their results go back to
the model as the JSON it wrote and a user message with the result, which a chat template
without a tool role can show. This is how agent frameworks call tools on models without
function calling: a JSON reply held to a schema, parsed into calls by the client.
"""

from __future__ import annotations

import json
import re
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from choreo.models.answer import Message, ToolCall, filled_id
from choreo.models.pricing import Counts
from choreo.models.structured import cut_field, schema_format
from choreo.spec.mesh import ModelTier

if TYPE_CHECKING:
    from choreo.models.providers import Assembler, Profile, Reply

#: The titles of the two schemas: a call or the answer (tools offered), the answer alone (a
#: conversation with tool turns whose next answer must be text).
CALL_OR_ANSWER = "tool_call_or_answer"
ANSWER_ONLY = "answer"
_CALL_START = re.compile(r'^\s*\{\s*"tool"\s*:\s*"([^"\\]+)"')


class PromptedTools:
    """A profile (choreo.models.providers.Profile) whose tool calls travel as JSON answers;
    everything else is ``inner``'s."""

    def __init__(self, inner: Profile, tier: ModelTier) -> None:
        if tier.structured_output is None:
            raise ValueError("prompted tool calls need the tier's structured_output")
        self.inner = inner
        self.structured = tier.structured_output
        self.name = inner.name
        self.url = inner.url

    def body(
        self,
        tier: ModelTier,
        messages: list[Message],
        *,
        temperature: float | None,
        max_tokens: int | None,
        tools: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        """``inner``'s request for the conversation in plain text, with the tools described
        in the system message and the answer held to a call of one or the answer; a
        conversation with tool turns and no tools offered is held to the answer alone."""
        plain = plain_conversation(messages)
        if tools:
            plain = described(plain, tools)
        body = self.inner.body(
            tier, plain, temperature=temperature, max_tokens=max_tokens, tools=None
        )
        if tools:
            schema, strict = call_or_answer(tools), False
        elif any(m.get("role") == "tool" for m in messages):
            schema, strict = _object(ANSWER_ONLY, {"answer": {"type": "string"}}), True
        else:
            return body
        body["response_format"] = schema_format(
            self.structured, schema["title"], schema, strict=strict
        )
        return body

    def send(self, body: dict[str, Any]) -> AbstractAsyncContextManager[Reply]:
        return self.inner.send(body)

    def answer(
        self, payload: dict[str, Any], request: dict[str, Any]
    ) -> tuple[str, tuple[ToolCall, ...]]:
        """The answer's text, or the tool call its JSON asks for; raises as ``inner``'s."""
        text, calls = self.inner.answer(payload, request)
        if calls:  # the server called a tool its own way after all
            return text, calls
        return read_answer(text, request)

    def reply_text(self, payload: dict[str, Any]) -> str:
        return self.inner.reply_text(payload)

    def counts(self, payload: dict[str, Any]) -> Counts:
        return self.inner.counts(payload)

    def assembler(self) -> Assembler:
        return self.inner.assembler()

    async def aclose(self) -> None:
        await self.inner.aclose()


def plain_conversation(messages: list[Message]) -> list[Message]:
    """``messages`` with tool turns as text: an assistant's calls as the JSON objects it
    would answer with now, one per line; a tool result as a user message naming the tool."""
    names: dict[str, str] = {}
    plain: list[Message] = []
    for message in messages:
        calls = message.get("tool_calls") or ()
        if message.get("role") == "assistant" and calls:
            lines = []
            for call in calls:
                names[call["id"]] = call["function"]["name"]
                lines.append(_call_text(call["function"]["name"], call["function"]["arguments"]))
            plain.append({"role": "assistant", "content": "\n".join(lines)})
        elif message.get("role") == "tool":
            name = names.get(message.get("tool_call_id", ""), "the tool")
            plain.append({"role": "user", "content": f"{name} returned: {message['content']}"})
        else:
            plain.append(message)
    return plain


def described(messages: list[Message], tools: list[dict[str, Any]]) -> list[Message]:
    """``messages`` with the tools and the two answer shapes at the end of the system
    message (one is put first when there is none)."""
    lines = ["You can call these tools:"]
    for tool in tools:
        function = tool["function"]
        parameters = json.dumps(function.get("parameters") or {"type": "object"})
        description = function.get("description")  # MCP tools may have none
        lines.append(
            f"- {function['name']}: {description}" if description else f"- {function['name']}"
        )
        lines.append(f"  arguments: {parameters}")
    lines.append(
        'To call a tool, reply with {"tool": its name, "arguments": {...}}. '
        'To answer, reply with {"answer": your answer}.'
    )
    text = "\n".join(lines)
    if messages and messages[0].get("role") == "system":
        first, *rest = messages
        return [{**first, "content": f"{first['content']}\n\n{text}"}, *rest]
    return [{"role": "system", "content": text}, *messages]


def call_or_answer(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The schema of an answer that calls one of ``tools`` or answers: ``anyOf`` one object
    per tool (its name a constant, its arguments its parameters) and ``{"answer": text}``.

    Definitions a tool's parameters refer to (``$defs``, as pydantic writes them) move to
    the root, where ``#/$defs/...`` points; a tool whose definitions clash with another's by
    name takes any object for arguments instead (the tool checks them when called).
    """
    definitions: dict[str, Any] = {}
    choices = []
    for tool in tools:
        function = tool["function"]
        parameters = dict(function.get("parameters") or {"type": "object"})
        own = parameters.pop("$defs", None)
        own = own if isinstance(own, dict) else {}  # a server's schema is not ours to trust
        if any(definitions.get(name, value) != value for name, value in own.items()):
            parameters = {"type": "object"}
        else:
            definitions.update(own)
        choices.append(
            _object(None, {"tool": {"const": function["name"]}, "arguments": parameters})
        )
    choices.append(_object(None, {"answer": {"type": "string"}}))
    schema: dict[str, Any] = {"title": CALL_OR_ANSWER, "anyOf": choices}
    if definitions:
        schema["$defs"] = definitions
    return schema


def read_answer(text: str, request: dict[str, Any]) -> tuple[str, tuple[ToolCall, ...]]:
    """The text and tool call of an answer to ``request``, as ``body`` asked for them.

    ``{"tool": name, "arguments": {...}}`` is a call (its id derived from the request, so a
    replayed step names it the same) when the request offered tools; one cut by its token
    limit is still a call of that tool, with arguments that are not JSON, which the tool
    loop answers as invalid. ``{"answer": text}``, whole or cut, is that text. Anything else
    (a request not held to these schemas, or a server that ignored them) is the text as is.
    """
    asked = _asked(request)
    if asked is None:
        return text, ()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        if asked == CALL_OR_ANSWER and isinstance(data.get("tool"), str):
            arguments = data.get("arguments")
            return "", (_call(request, data["tool"], json.dumps(arguments)),)
        answer = data.get("answer")
        return (answer, ()) if isinstance(answer, str) else (text, ())
    started = _CALL_START.match(text)
    if asked == CALL_OR_ANSWER and started is not None:
        return "", (_call(request, started.group(1), text),)
    answer = cut_field(text, "answer")
    return (answer, ()) if answer is not None else (text, ())


def _call(request: dict[str, Any], name: str, arguments: str) -> ToolCall:
    return ToolCall(id=filled_id(request, 0), name=name, arguments=arguments)


def _call_text(name: str, arguments: str) -> str:
    try:
        parsed: Any = json.loads(arguments)
    except ValueError:
        parsed = arguments  # what the model sent, shown as it was
    return json.dumps({"tool": name, "arguments": parsed})


def _object(title: str | None, properties: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if title is not None:
        schema["title"] = title
    return schema


def _asked(request: dict[str, Any]) -> str | None:
    """Which of this module's schemas ``request`` held its answer to, if any."""
    shape = request.get("response_format")
    if not isinstance(shape, dict):
        return None
    schema = shape.get("schema") or (shape.get("json_schema") or {}).get("schema") or {}
    title = schema.get("title") if isinstance(schema, dict) else None
    return title if title in (CALL_OR_ANSWER, ANSWER_ONLY) else None
