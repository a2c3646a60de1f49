"""An OpenAI-compatible chat endpoint that answers from a script, for demos and tests.

It speaks the same HTTP API as a real model server, so the client, its retries and its
accounting are exercised for real; every answer is labelled scripted (``model``,
``system_fingerprint`` and the ``X-Choreo-Scripted`` header) so it is never mistaken for a model.
``GET /v1/stats`` reports what the server answered (requests, rate limits, outages, and tokens
per requested model), so a test can hold the client's accounting against the server's.
``PUT /v1/faults`` replaces the script's fault switches while it runs (an outage that starts
and ends), and a rule can break its own answers the ways real servers do (``Rule.fault``).

It answers as the providers do (docs/MODELS.md, "Providers"): the chat API at
``/v1/chat/completions`` and at Azure OpenAI's ``/openai/deployments/NAME/chat/completions``
(``api-version`` and an ``api-key`` header), Anthropic's Messages API at ``/v1/messages``
(choreo.model_server.messages), each with its error shapes and rate-limit headers, and a
request with ``stream: true`` as server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from choreo.kafka.runner import run_service
from choreo.kafka.service import Service
from choreo.model_server import messages as anthropic_api
from choreo.model_server.process import ANNOUNCEMENT
from choreo.model_server.script import Faults, Rule, Script, load_script
from choreo.models.scripted import SCRIPTED_HEADER
from choreo.observe.settings import get_settings

log = logging.getLogger(__name__)

FINGERPRINT = "choreo-scripted"
#: OpenAI's reasoning models, which refuse ``temperature`` and ``max_tokens``.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
#: Azure's deployment path, also under the ``/v1`` a scripted tier's URL ends with.
_AZURE_PATH = re.compile(r"^(/v1)?/openai/deployments/([^/]+)/chat/completions$")


class BadRequest(ValueError):
    """The request body is not a chat-completions request. It becomes the 400 answer, never
    reaching a caller as an exception (so no ``ChoreoError``)."""


class ScriptedServer(ThreadingHTTPServer):
    """Holds the script and the only state there is: the request counter for fault injection
    and the counts ``/v1/stats`` reports."""

    daemon_threads = True
    # Many agents' calls arrive at once; the default backlog of 5 drops connections, which the
    # clients see as second-long connect retries.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], script: Script) -> None:
        super().__init__(address, _Handler)
        self.script = script
        self.faults = script.faults  # replaced whole by PUT /v1/faults
        self._lock = threading.Lock()
        self._chat_requests = 0
        self._counts = {
            "requests": 0,
            "completions": 0,
            "rate_limited": 0,
            "unavailable": 0,
            "server_error": 0,
        }
        self._models: dict[str, dict[str, int]] = {}

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (as one does on a stalled stream) is no server error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("client went away", extra={"client": str(client_address)})
            return
        super().handle_error(request, client_address)

    def next_request_number(self) -> int:
        with self._lock:
            self._chat_requests += 1
            return self._chat_requests

    def count(self, outcome: str) -> None:
        """Count one chat request answered with ``outcome`` (a key of ``/v1/stats``)."""
        with self._lock:
            self._counts["requests"] += 1
            if outcome in self._counts:
                self._counts[outcome] += 1

    def count_completion(self, tokens: tuple[int, int], requested: str) -> None:
        """Count one answer of ``tokens`` (prompt, completion; zeros when it reported none)."""
        with self._lock:
            self._counts["requests"] += 1
            self._counts["completions"] += 1
            model = self._models.setdefault(
                requested, {"completions": 0, "prompt_tokens": 0, "completion_tokens": 0}
            )
            model["completions"] += 1
            model["prompt_tokens"] += tokens[0]
            model["completion_tokens"] += tokens[1]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **self._counts,
                "models": {name: dict(c) for name, c in sorted(self._models.items())},
            }


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of content parts
    (``null``, as an assistant message asking for tool calls has, is empty)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise BadRequest("message content must be a string or a list of content parts")


def _parse_chat(body: bytes) -> tuple[str, list[tuple[str, str]]]:
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest("body must be a JSON object")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    parsed = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{i}] needs a string 'role'")
        parsed.append((message["role"], _text(message.get("content", ""))))
    model = request.get("model")
    return (model if isinstance(model, str) else ""), parsed


def _tokens(text: str) -> int:
    return len(text.split())


def matching_rule(script: Script, model: str, messages: list[tuple[str, str]]) -> Rule:
    """The rule that answers a request (parsed by ``_parse_chat`` into model and messages)."""
    system = "\n\n".join(text for role, text in messages if role in ("system", "developer"))
    user = "\n\n".join(
        text for role, text in messages if role not in ("system", "developer", "tool")
    )
    tool = "\n\n".join(text for role, text in messages if role == "tool")
    return script.rule(system, user, model, tool)


def completion(
    script: Script, rule: Rule, body: bytes, messages: list[tuple[str, str]]
) -> dict[str, Any]:
    """The chat-completions response to ``body`` that ``rule`` gives: a pure function of the
    script and request. A reply longer than the request's ``max_tokens`` is cut there
    (``finish_reason: length``), as real servers do. Usage counts the rule's text even when
    its fault drops the content."""
    digest = hashlib.sha256(body).hexdigest()
    message: dict[str, Any]
    if rule.tool_calls is None:
        reply, finish = rule.text, "stop"
        limit = json.loads(body).get("max_tokens")
        if isinstance(limit, int) and _tokens(reply) > limit:  # a word is a token here
            reply, finish = " ".join(reply.split()[:limit]), "length"
        completion_tokens = _tokens(reply)
        content: str | None = reply
        if rule.fault == "lone_surrogate":
            content = reply + "\ud83d"  # json.dumps writes it as the escape \ud83d, alone
        elif rule.fault == "null_content":
            content = None
        message = {"role": "assistant", "content": content}
    else:
        object_arguments = script.provider == "ollama"  # Ollama: an object, and no ids
        # in the script's order, as a model writes them: equal arguments may differ on the wire
        arguments = [json.dumps(c.arguments) for c in rule.tool_calls]
        message = {
            "role": "assistant",
            "content": "" if object_arguments else None,
            "tool_calls": [
                {
                    **({} if object_arguments else {"id": f"call_{digest[:16]}_{i}"}),
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": c.arguments if object_arguments else args,
                    },
                }
                for i, (c, args) in enumerate(zip(rule.tool_calls, arguments, strict=True))
            ],
        }
        completion_tokens = sum(_tokens(args) + 1 for args in arguments)
        finish = "tool_calls"
    if rule.reasoning is not None and script.provider in ("llamacpp", "vllm"):
        message["reasoning_content"] = rule.reasoning
    prompt_tokens = sum(_tokens(text) for _, text in messages)
    response: dict[str, Any] = {
        "id": "chatcmpl-scripted-" + digest[:24],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": script.label,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish,
            }
        ],
    }
    if not script.faults.no_usage:
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        details = script.usage
        if (
            details.cached_tokens
            or details.reasoning_tokens
            or script.provider
            in (
                "openai",
                "azure",
            )
        ):  # OpenAI's details; most compatible servers send none
            usage["prompt_tokens_details"] = {
                "cached_tokens": min(details.cached_tokens, prompt_tokens)
            }
            usage["completion_tokens_details"] = {
                "reasoning_tokens": min(details.reasoning_tokens, completion_tokens)
            }
        response["usage"] = usage
    return response


def completion_chunks(response: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """``response`` as the ``chat.completion.chunk`` events OpenAI streams for it: the role,
    the text a word at a time, each tool call's name then its arguments in two halves, the
    finish reason, and (when asked for) a last chunk with the usage and no choices."""
    head = {k: response[k] for k in ("id", "created", "model", "system_fingerprint")}
    choice = response["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""})]
    if message.get("reasoning_content"):
        chunks.append(chunk({"reasoning_content": message["reasoning_content"]}))
    words = (message.get("content") or "").split(" ")
    chunks += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words) if w]
    for index, call in enumerate(message.get("tool_calls") or ()):
        arguments = call["function"]["arguments"]
        start = {k: v for k, v in call.items() if k != "function"}
        start["function"] = {"name": call["function"]["name"], "arguments": ""}
        if not isinstance(arguments, str):  # an object goes in one piece
            start["function"]["arguments"] = arguments
            chunks.append(chunk({"tool_calls": [{"index": index, **start}]}))
            continue
        chunks.append(chunk({"tool_calls": [{"index": index, **start}]}))
        half = len(arguments) // 2
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
            for part in (arguments[:half], arguments[half:])
        ]
    chunks.append(chunk({}, choice["finish_reason"]))
    if include_usage and "usage" in response:
        chunks.append(
            {**head, "object": "chat.completion.chunk", "choices": [], "usage": response["usage"]}
        )
    return chunks


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer
    #: The API of the request being answered (see ``_api``); shapes its errors.
    api: str | None = None
    protocol_version = "HTTP/1.1"
    #: TCP_NODELAY: headers and body go out as two writes, and on a kept-alive connection
    #: Nagle's algorithm held the body until the client's delayed ACK (about 40 ms a call).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.api = None
        if self.path == "/v1/stats":  # the server's own accounting, answered even when "down"
            self._json(HTTPStatus.OK, self.server.stats())
            return
        if self._down():
            return
        script = self.server.script
        if self.path == "/healthz":
            self._json(HTTPStatus.OK, {"status": "ok", "model": script.label, "scripted": True})
        elif self.path == "/v1/models":
            self._json(
                HTTPStatus.OK,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": script.label,
                            "object": "model",
                            "created": 0,
                            "owned_by": FINGERPRINT,
                        },
                    ],
                },
            )
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}", "not_found")

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/faults":
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}", "not_found")
            return
        try:
            self.server.faults = Faults.model_validate_json(body)
        except ValidationError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc), "invalid_request_error")
            return
        self._json(HTTPStatus.OK, self.server.faults.model_dump())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        self.api = api = _api(url.path)
        if self._down():
            if api is not None:
                self.server.count("unavailable")
            return
        if api is None:
            self._error(HTTPStatus.NOT_FOUND, f"no route {url.path}", "not_found")
            return
        if not self._authorized(parse_qs(url.query)):
            return
        limit = self.server.faults.rate_limit
        if limit is not None and self.server.next_request_number() % limit.every == 0:
            self.server.count("rate_limited")
            self._error(
                HTTPStatus.TOO_MANY_REQUESTS,
                "scripted rate limit",
                "rate_limit_error" if api == "messages" else "rate_limit_exceeded",
                _rate_limit_headers(api, limit.retry_after),
            )
            return
        script = self.server.script
        try:
            if api == "messages":
                requested, messages, request = anthropic_api.parse_messages(body)
            else:
                requested, messages = _parse_chat(body)
                request = json.loads(body)
        except (BadRequest, anthropic_api.BadMessages) as exc:
            self.server.count("bad_request")
            self._error(HTTPStatus.BAD_REQUEST, str(exc), "invalid_request_error")
            return
        refused = sorted(set(script.faults.rejects) & set(request))
        if script.provider in ("openai", "azure") and _REASONING_MODEL.match(requested):
            refused += sorted({"temperature", "max_tokens"} & set(request) - set(refused))
        if refused and api != "messages":
            self.server.count("bad_request")
            self._error(
                HTTPStatus.BAD_REQUEST,
                f"unsupported parameter: {', '.join(refused)} is not supported with this model",
                "unsupported_parameter",
            )
            return
        rule = matching_rule(script, requested, messages)
        if rule.fault == "server_error":
            self.server.count("server_error")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "scripted server error", "server_error")
            return
        if api == "messages":
            response = anthropic_api.message(script, rule, body, messages)
            usage = response.get("usage") or {}
            tokens = (
                sum(
                    usage.get(k, 0)
                    for k in (
                        "input_tokens",
                        "cache_read_input_tokens",
                        "cache_creation_input_tokens",
                    )
                ),
                usage.get("output_tokens", 0),
            )
        else:
            response = completion(script, rule, body, messages)
            usage = response.get("usage") or {}
            tokens = (usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
        if script.latency_ms:
            time.sleep(script.latency_ms / 1000)  # simulated model latency
        self.server.count_completion(tokens, requested)
        if request.get("stream") is True:
            if api == "messages":
                events = anthropic_api.message_events(response)
            else:
                include = (request.get("stream_options") or {}).get("include_usage") is True
                events = completion_chunks(response, include)
            self._stream(events, rule, done=api != "messages")
        elif rule.fault == "gzip_lie":
            self._json(HTTPStatus.OK, response, {"Content-Encoding": "gzip"})
        elif rule.fault == "trickle":
            self._json(HTTPStatus.OK, response, trickle_s=rule.trickle_interval_s)
        else:
            self._json(HTTPStatus.OK, response)

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        """Whether the request carries the script's key as its API wants it (and, for Azure,
        an ``api-version``); else answers as that API does."""
        key = self.server.script.api_key
        if self.api == "azure":
            if not query.get("api-version"):
                self._error(HTTPStatus.NOT_FOUND, "Resource not found", "404")
                return False
            given = self.headers.get("api-key")
        elif self.api == "messages":
            if not self.headers.get("anthropic-version"):
                self._error(
                    HTTPStatus.BAD_REQUEST,
                    "anthropic-version: header is required",
                    "invalid_request_error",
                )
                return False
            # the key as x-api-key, or as a bearer token (the SDK's 2.x line sends that)
            bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            given = self.headers.get("x-api-key") or bearer
        else:
            given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if key is None or given == key:
            return True
        self.server.count("unauthorized")
        kind = "authentication_error" if self.api == "messages" else "invalid_api_key"
        self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong API key", kind)
        return False

    def _stream(self, events: list[dict[str, Any]], rule: Rule, *, done: bool) -> None:
        """Send ``events`` as server-sent events in a chunked body (and OpenAI's ``[DONE]``);
        the rule's fault cuts the stream half-way or stalls it there."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header(SCRIPTED_HEADER, "true")
        self.end_headers()
        lines = [
            (f"event: {e['type']}\n" if "type" in e else "") + f"data: {json.dumps(e)}\n\n"
            for e in events
        ]
        if done:
            lines.append("data: [DONE]\n\n")
        half = len(lines) // 2
        for i, line in enumerate(lines):
            if i == half and rule.fault == "stream_cut":
                self.close_connection = True  # no last chunk: the body ends unfinished
                return
            if i == half and rule.fault == "stream_stall":
                time.sleep(rule.stall_s)
            data = line.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _down(self) -> bool:
        if not self.server.faults.down:
            return False
        self._error(HTTPStatus.SERVICE_UNAVAILABLE, "scripted outage", "server_down")
        return True

    def _error(
        self, status: HTTPStatus, message: str, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        """An error in the shape of the API asked (Anthropic's has a top-level ``type``)."""
        error: dict[str, Any] = {"error": {"message": message, "type": kind}}
        if self.api == "messages":
            error = {"type": "error", **error}
        self._json(status, error, headers)

    def _json(
        self,
        status: HTTPStatus,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
        trickle_s: float = 0.0,
    ) -> None:
        """Send ``payload`` as JSON; with ``trickle_s``, one byte of the body at a time."""
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header(SCRIPTED_HEADER, "true")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not trickle_s:
            self.wfile.write(data)
            return
        for i in range(len(data)):
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            time.sleep(trickle_s)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("request", extra={"client": self.address_string(), "line": format % args})


def _api(path: str) -> str | None:
    """Which API a path is: ``chat``, ``azure`` (chat at a deployment) or ``messages``."""
    if path == "/v1/chat/completions":
        return "chat"
    if path == "/v1/messages":
        return "messages"
    return "azure" if _AZURE_PATH.match(path) else None


def _rate_limit_headers(api: str, retry_after: float) -> dict[str, str]:
    """A 429's headers as each provider sends them."""
    if api == "messages":
        return {
            "retry-after": f"{retry_after:g}",
            "anthropic-ratelimit-requests-remaining": "0",
        }
    headers = {
        "Retry-After": f"{retry_after:g}",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{retry_after:g}s",
    }
    if api == "azure":  # whole seconds, and the exact wait in milliseconds
        headers["Retry-After"] = str(math.ceil(retry_after))
        headers["retry-after-ms"] = f"{retry_after * 1000:g}"
    return headers


def serve(script: Path, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve ``script`` as this process until SIGTERM or SIGINT (choreo.kafka.runner);
    announce the bound URL on one stdout line.

    The script is validated before binding, so a bad one fails without ever listening
    (``ScriptError``; ``OSError`` when the address cannot be bound). Prometheus metrics are
    served on ``CHOREO_METRICS_PORT`` when it is set, as by every service of the mesh (the
    process metrics; model calls are counted by the agents).
    """
    run_service("model-server", get_settings(), lambda: ScriptedModel(script, host, port))


class ScriptedModel(Service):
    """The scripted server as a service (choreo.kafka.service.Service): entering loads the
    script, binds and serves from a thread of its own at ``url``; leaving stops it.
    ``run(stop)``, the process's part, announces ``url`` on stdout and serves until ``stop``
    is set."""

    def __init__(self, script: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.script = script
        self.address = (host, port)
        self.url = ""

    async def _acquire(self, stack: contextlib.AsyncExitStack) -> None:
        server = ScriptedServer(self.address, load_script(self.script))
        stack.callback(server.server_close)

        async def shutdown() -> None:
            await asyncio.to_thread(server.shutdown)  # waits up to one poll interval

        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="model-server",
            daemon=True,
        ).start()
        stack.push_async_callback(shutdown)
        bound_host, bound_port = server.server_address[:2]
        self.url = f"http://{bound_host!s}:{bound_port}/v1"

    async def run(self, stop: asyncio.Event) -> None:
        print(f"{ANNOUNCEMENT}{self.url}", flush=True)  # what the starter of the process reads
        await stop.wait()
