"""Scripted model servers answering as each provider does, over real HTTP, and a client to
call them: the servers run in a thread of the test process (the server's HTTP is what these
tests are about, not its process)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from choreo.model_server.script import parse_script
from choreo.model_server.server import ScriptedServer
from choreo.models.client import Completion, Message, ModelClient, ModelError
from choreo.spec.mesh import ModelTier

SYSTEM: Message = {"role": "system", "content": "You are the tester."}
KEY = "sk-scripted"
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
#: Rules every provider's server answers by: a tool round trip, a plain answer, and faults
#: chosen by the user's words.
RULES: list[dict[str, Any]] = [
    {"when": {"tool": "sunny"}, "reply": "It is sunny in Paris."},
    {
        "when": {"user": "weather"},
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
    },
    {"when": {"user": "think"}, "reply": "Forty-two.", "reasoning": "Six times seven."},
    {
        "when": {"user": "cut"},
        "reply": "one two three four five six seven eight",
        "fault": "stream_cut",
    },
    {
        "when": {"user": "stall"},
        "reply": "one two three four five six seven eight",
        "fault": "stream_stall",
    },
    {"when": {"system": "You are the tester"}, "reply": "four tokens of reply"},
]


@contextmanager
def scripted(**script: Any) -> Iterator[tuple[str, ScriptedServer]]:
    """A scripted server for ``script`` (the rules above unless given); yields its root URL
    (``http://127.0.0.1:PORT``) and the server, for its stats."""
    server = ScriptedServer(
        ("127.0.0.1", 0), parse_script({"model": "test", "rules": RULES, **script})
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def tier(**fields: Any) -> ModelTier:
    return ModelTier.model_validate({"model": "test-model", "max_retries": 2, **fields})


def call(
    tier: ModelTier,
    messages: list[Message],
    *,
    api_key: str | None = KEY,
    tools: list[dict[str, Any]] | None = None,
    max_tokens: int | None = None,
    **options: Any,
) -> Completion:
    """One call of a fresh client for ``tier``, backing off briefly between retries;
    ``options`` go to the client."""

    async def go() -> Completion:
        async with ModelClient(
            tier, name="t", api_key=api_key, backoff_s=0.01, **options
        ) as client:
            return await client.complete(
                messages, agent="tester", deadline=None, tools=tools, max_tokens=max_tokens
            )

    return asyncio.run(go())


def failure(tier: ModelTier, messages: list[Message], **options: Any) -> ModelError:
    try:
        call(tier, messages, **options)
    except ModelError as exc:
        return exc
    raise AssertionError("the call did not fail")


def user(text: str) -> list[Message]:
    return [SYSTEM, {"role": "user", "content": text}]


def stats(root: str) -> dict[str, Any]:
    return dict(httpx.get(f"{root}/v1/stats").json())
