"""OpenAI-compatible chat client: retries, rate limits, a circuit breaker, token and cost
accounting.

One client per model tier per process, shared by every agent in it: the tier's concurrency
limit, token buckets and circuit are properties of the provider, not of an agent. Rate limits
and outages are retried with exponential backoff (seeded jitter, so a run is reproducible);
a ``Retry-After`` is honoured by every caller of the tier, not only the one that got it. After
``circuit_failures`` consecutive failed requests the tier's circuit opens until a probe
succeeds (see choreo.models.ratelimit): with ``on_outage: fail`` calls then fail fast;
with ``pause`` (the default) they wait for the circuit, within their trace's deadline, and
the agent's ``Pausing`` tells its loop to stop taking work meanwhile. Anything else fails fast as a
``ModelError`` whose ``reason`` is a short, bounded label fit for metrics and terminal records.

Time is bounded twice: each attempt (connect, sending, every read of the body) by the tier's
``timeout_s`` as one total, since httpx's own timeouts are per read and a server that trickles
its answer would never trip them (a streamed attempt instead by the wait for its first chunk
and between chunks, choreo.models.stream); and the whole call, retries and waits included, by
the trace's deadline. Every transport, protocol and decoding error becomes a ``ModelError``;
an answer the provider billed but that is no chat completion still reports its usage.

How each provider is called and read is its profile's (choreo.models.providers); the cost of
its tokens is choreo.models.pricing's.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
import msgspec
from opentelemetry import trace
from pydantic import ValidationError

from choreo.budget import allowance
from choreo.budget.tokens import MESSAGE_OVERHEAD_TOKENS, estimate_tokens
from choreo.models.answer import Completion, Message, ToolCall
from choreo.models.errors import ModelConfigError, ModelError
from choreo.models.pricing import cost_usd
from choreo.models.providers import Profile, Reply, profile_for
from choreo.models.ratelimit import CircuitState, TierGate
from choreo.models.scripted import SCRIPTED_HEADER, SCRIPTED_PROVIDER
from choreo.models.stream import StreamBroken, StreamReader, TooLarge
from choreo.observe import telemetry
from choreo.observe.metrics import (
    COST,
    MODEL_CALL_DURATION,
    MODEL_CALL_ERRORS,
    MODEL_CIRCUIT_STATE,
    MODEL_RETRIES,
    TOKENS,
    USAGE_ESTIMATED,
)
from choreo.schemas import Usage
from choreo.schemas.codec import clean_text
from choreo.spec.mesh import ModelTier

__all__ = [
    "Completion",
    "Message",
    "ModelClient",
    "ModelConfigError",
    "ModelError",
    "Pausing",
    "ToolCall",
    "env_var",
    "parse_retry_after",
]

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

#: The most bytes of one response body the client reads (a guard against runaway replies).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
#: Longest sleep of a call waiting for an open circuit before it looks again.
CIRCUIT_POLL_S = 0.5


class Pausing:
    """The model clients of one service whose tier pauses on an outage (``on_outage:
    pause``): while one of them is held, the service's agent takes no new work.

    A client joins the ``Pausing`` that is ``collecting`` when it is built (in the same
    thread of control), so services sharing a process or an event loop each pause for their
    own tiers only, never for another's outage.
    """

    def __init__(self) -> None:
        self._clients: weakref.WeakSet[ModelClient] = weakref.WeakSet()

    @contextmanager
    def collecting(self) -> Iterator[Pausing]:
        """Within the block, every pausing client built joins this set."""
        token = _collecting.set(self)
        try:
            yield self
        finally:
            _collecting.reset(token)

    def tiers_down(self) -> list[str]:
        """Tiers whose calls are held for an outage right now: the circuit is open and
        cooling down, or its probe is in flight."""
        return sorted({c.name for c in self._clients if c.gate.breaker.holding()})


_collecting: ContextVar[Pausing | None] = ContextVar("choreo_pausing", default=None)


_OVERRIDES = {
    "base_url": "BASE_URL",
    "model": "MODEL",
    "temperature": "TEMPERATURE",
    "price_in_per_mtok": "PRICE_IN_PER_MTOK",
    "price_out_per_mtok": "PRICE_OUT_PER_MTOK",
}


def env_var(tier_name: str, suffix: str) -> str:
    """The name of a tier's override variable, e.g. ``CHOREO_MODEL_FAST_LOCAL_BASE_URL``."""
    return f"CHOREO_MODEL_{tier_name.upper().replace('-', '_')}_{suffix}"


def _resolve_tier(tier_name: str, tier: ModelTier, environ: Mapping[str, str]) -> ModelTier:
    overrides = {
        field: environ[env_var(tier_name, suffix)]
        for field, suffix in _OVERRIDES.items()
        if environ.get(env_var(tier_name, suffix))
    }
    unpriced = [
        env_var(tier_name, _OVERRIDES[f])
        for f in ("price_in_per_mtok", "price_out_per_mtok")
        if f not in overrides
    ]
    if overrides.get("model", tier.model) != tier.model and unpriced:
        # the spec's prices are another model's: a cost from them would be wrong, and a
        # max_cost budget would not hold
        raise ModelConfigError(
            f"model tier {tier_name!r}: {env_var(tier_name, 'MODEL')} replaces the model, so "
            f"give its prices too (US dollars per million tokens): {', '.join(unpriced)}"
        )
    if not overrides:
        resolved = tier
    else:
        try:
            resolved = ModelTier.model_validate({**tier.model_dump(), **overrides})
        except ValidationError as exc:
            bad = ", ".join(
                f"{env_var(tier_name, _OVERRIDES[str(err['loc'][0])])}: {err['msg']}"
                for err in exc.errors()
                if err["loc"] and err["loc"][0] in _OVERRIDES
            )
            raise ModelConfigError(
                f"model tier {tier_name!r}: bad override: {bad or exc}"
            ) from None
    if resolved.base_url is None:
        raise ModelConfigError(
            f"model tier {tier_name!r} is scripted ({resolved.script}): start the scripted model "
            f"server with `choreo model-server {resolved.script}` and give its URL in "
            f"{env_var(tier_name, 'BASE_URL')}"
        )
    return resolved


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay seconds or an HTTP-date)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _provider(profile: Profile, host: str) -> str:
    """``gen_ai.provider.name``: the tier's provider, or OpenAI's own API by its host."""
    if profile.name == "openai_compatible" and host == "api.openai.com":
        return "openai"
    return profile.name


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait a refusal asks for: ``retry-after-ms`` (Azure OpenAI's, finer), else
    ``Retry-After``."""
    try:
        return max(0.0, float(headers["retry-after-ms"]) / 1000)
    except (KeyError, ValueError):
        return parse_retry_after(headers.get("Retry-After"))


def _status_reason(status: int) -> str:
    return "rate_limited" if status == 429 else f"http_{status}"


def _error_detail(status: int, data: bytes) -> str:
    """The provider's error message when it sent one in the usual shape, else the status."""
    try:
        message = json.loads(data)["error"]["message"]
    except (ValueError, KeyError, TypeError, RecursionError):
        message = None
    detail = f": {clean_text(message)[:500]}" if isinstance(message, str) else ""
    return f"HTTP {status}{detail}"


def _json_object(data: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, else ``None``."""
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the limit
        return None
    return payload if isinstance(payload, dict) else None


@dataclass
class _Tries:
    """Requests made so far by one call (read when its deadline interrupts it)."""

    count: int = 0


def _cleaned(message: Message) -> Message:
    """``message`` with its text content free of lone surrogates (``None``, as an assistant
    message asking for tools has, stays ``None``)."""
    content = message.get("content")
    return {**message, "content": clean_text(content)} if isinstance(content, str) else message


class ModelClient:
    """Chat completions against one tier's endpoint. Use as an async context manager."""

    def __init__(
        self,
        tier: ModelTier,
        *,
        name: str,
        api_key: str | None = None,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        seed: int | str | None = None,
    ) -> None:
        """``seed`` drives the backoff jitter (default: the tier name); give each replica its
        own, e.g. its index, so replicas do not retry in lockstep."""
        if tier.base_url is None:
            raise ModelConfigError(
                f"model tier {name!r} has no base_url (use ModelClient.for_tier)"
            )
        self.tier = tier
        self.name = name
        self._http = httpx.AsyncClient(
            headers={"User-Agent": "choreo-mesh"},
            # the client bounds each attempt itself; this only keeps httpx from cutting first
            timeout=httpx.Timeout(
                max(tier.timeout_s, tier.first_token_timeout_s or 0, tier.idle_timeout_s or 0)
            ),
            limits=httpx.Limits(max_connections=tier.concurrency),
        )
        self.profile = profile_for(tier, self._http, api_key)
        self.url = self.profile.url
        endpoint = httpx.URL(self.url)
        self._server_attributes = {  # the span attributes every call to this endpoint shares
            "gen_ai.provider.name": _provider(self.profile, endpoint.host),
            "server.address": endpoint.host,
            "server.port": endpoint.port or (443 if endpoint.scheme == "https" else 80),
        }
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._max_retry_after_s = max_retry_after_s
        self._rng = random.Random(name if seed is None else seed)
        self._slots = asyncio.Semaphore(tier.concurrency)
        self.gate = TierGate(tier)
        self._report_circuit()
        if tier.on_outage == "pause" and (pausing := _collecting.get()) is not None:
            pausing._clients.add(self)

    @classmethod
    def for_tier(
        cls,
        tier_name: str,
        tier: ModelTier,
        *,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ModelClient:
        """A client for a mesh spec's tier, with ``CHOREO_MODEL_<TIER>_*`` overrides applied.

        ``_BASE_URL``, ``_MODEL``, ``_TEMPERATURE`` and the prices replace the spec's values (a
        new ``_MODEL`` needs both prices, else ModelConfigError); the API key
        is ``_API_KEY``, else the variable named by the tier's ``api_key_env``. ``options``
        go to the constructor.
        """
        env = os.environ if environ is None else environ
        resolved = _resolve_tier(tier_name, tier, env)
        api_key = env.get(env_var(tier_name, "API_KEY")) or (
            env.get(tier.api_key_env) if tier.api_key_env else None
        )
        if tier.api_key_env and not api_key:
            log.warning(
                "model tier has no API key",
                extra={"tier": tier_name, "api_key_env": tier.api_key_env},
            )
        return cls(resolved, name=tier_name, api_key=api_key, **options)

    @property
    def model(self) -> str:
        return self.tier.model

    @property
    def temperature(self) -> float | None:
        return self.tier.temperature

    async def complete(
        self,
        messages: list[Message],
        *,
        agent: str,
        temperature: float | None = None,
        max_tokens: int | None = None,
        deadline: datetime | None,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        """One chat completion, done by ``deadline`` (the trace's, if it has one).

        ``deadline`` has no default: every caller says which trace's time it spends, so no
        path can wait for a held circuit or a slow endpoint past the trace's end.

        ``tools`` (OpenAI function-calling entries) are offered to the model; the calls it
        asks for come back in ``Completion.tool_calls``; ``tool_choice`` is sent as ``auto``
        (OpenAI's default, which llama.cpp's server needs said). ``response_format`` is sent
        as given (choreo.agent.routing asks for a route that way). Raises ``OverBudget`` (no request
        made) when the step's allowance cannot pay for it, and ``ModelError`` once retrying
        cannot help or the deadline has passed; its ``usage`` counts what the provider
        billed. Lone surrogates in the answer are replaced (see
        ``choreo.schemas.codec.clean_text``), so the text always encodes.
        """
        spending = allowance.current()
        if spending is not None:
            max_tokens = spending.cap(messages, self.tier, max_tokens)
        body = self.profile.body(
            self.tier,
            [_cleaned(m) for m in messages],
            temperature=temperature,
            max_tokens=max_tokens,
            tools=tools,
        )
        if response_format is not None:  # only for tiers that take one (choreo.agent.routing)
            body["response_format"] = response_format
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model,
            **(
                {"gen_ai.request.temperature": body["temperature"]} if "temperature" in body else {}
            ),
            "gen_ai.agent.name": agent,
            **self._server_attributes,
        }
        estimated = estimate_tokens(messages) + (max_tokens or 0)
        started = time.perf_counter()
        with _tracer.start_as_current_span(
            f"chat {self.model}",
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
        ) as span:
            try:
                completion = await self._call(body, estimated, started, deadline, messages)
            except ModelError as exc:
                if not exc.usage.model:
                    exc.usage = msgspec.structs.replace(exc.usage, model=self.model)
                MODEL_CALL_ERRORS.labels(agent, self.model, exc.reason).inc()
                self._charge(agent, exc.usage)
                if spending is not None:
                    spending.spend(exc.usage)
                span.set_attribute("error.type", exc.reason)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                raise
            finally:
                MODEL_CALL_DURATION.labels(agent, self.model).observe(time.perf_counter() - started)
            usage = completion.usage
            if spending is not None:
                spending.spend(usage)
            if completion.scripted:
                span.set_attribute("gen_ai.provider.name", SCRIPTED_PROVIDER)
            if telemetry.record_content():
                span.set_attributes(
                    {
                        "gen_ai.input.messages": json.dumps(messages),
                        "gen_ai.output.messages": json.dumps([completion.message()]),
                    }
                )
            span.set_attributes(
                {
                    "gen_ai.response.model": usage.model or self.model,
                    "gen_ai.usage.input_tokens": usage.tokens_in,
                    "gen_ai.usage.output_tokens": usage.tokens_out,
                    "choreo.cost_usd": usage.cost,
                    "choreo.model.calls": usage.calls,
                    "choreo.model.scripted": completion.scripted,
                }
            )
        self._charge(agent, usage)
        return completion

    def _charge(self, agent: str, usage: Usage) -> None:
        TOKENS.labels(agent, self.model, "in").inc(usage.tokens_in)
        TOKENS.labels(agent, self.model, "out").inc(usage.tokens_out)
        COST.labels(agent, self.model).inc(usage.cost)

    async def _call(
        self,
        body: dict[str, Any],
        estimated: int,
        started: float,
        deadline: datetime | None,
        messages: list[Message],
    ) -> Completion:
        """The whole call, retries and waits included, within what is left of ``deadline``."""
        tries = _Tries()
        left = None if deadline is None else (deadline - datetime.now(UTC)).total_seconds()
        try:
            if left is not None and left <= 0:
                raise TimeoutError
            async with asyncio.timeout(left):
                data, scripted = await self._post(body, estimated, tries, started, messages)
        except TimeoutError:
            raise ModelError(
                "deadline",
                self._failure(f"the trace's deadline {deadline} came first", tries.count),
                tries.count,
            ) from None
        payload = data if isinstance(data, dict) else _json_object(data)
        usage = self._usage(payload, tries.count, started, messages)
        self.gate.settle(estimated, usage.tokens_in + usage.tokens_out)
        try:
            if payload is None:
                raise ValueError("the body is not JSON")
            text, tool_calls = self.profile.answer(payload, body)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ModelError(
                "bad_response",
                self._failure(f"not a chat completion ({type(exc).__name__}: {exc})", tries.count),
                tries.count,
                usage,
            ) from None
        return Completion(
            text=clean_text(text), usage=usage, scripted=scripted, tool_calls=tool_calls
        )

    async def _post(
        self,
        body: dict[str, Any],
        estimated: int,
        tries: _Tries,
        started: float,
        messages: list[Message],
    ) -> tuple[bytes | dict[str, Any], bool]:
        """POST through the tier's gate, with retries on 429, 5xx, timeouts and transport
        errors; returns the body of the first 2xx answer (a streamed one assembled into the
        payload it stands for) and whether it is scripted. Failures of the tier (not 429s,
        the provider's flow control, nor 4xx, the request's own fault) count towards opening
        its circuit. A stream broken after it began is not retried: the provider may have
        billed it, and its usage is estimated from what arrived."""
        while True:
            tries.count += 1
            attempts = tries.count
            await self._through_circuit(attempts)
            await self.gate.admit(estimated)
            wait: float | None = None
            status = 0
            try:
                async with self._slots:
                    response, data = await self._attempt(body)
            except (TimeoutError, httpx.TimeoutException):
                reason, detail = "timeout", self._timeout_detail()
            except StreamBroken as exc:
                usage = self._usage(exc.payload, attempts, started, messages, partial=True)
                self.gate.settle(estimated, usage.tokens_in + usage.tokens_out)
                self.gate.breaker.failure()
                self._report_circuit()
                raise ModelError(
                    exc.reason, self._failure(str(exc), attempts), attempts, usage
                ) from None
            except httpx.TransportError as exc:
                reason, detail = "connection", f"{type(exc).__name__}: {exc}"
            except (httpx.HTTPError, TooLarge) as exc:  # decoding, redirects: not retried
                self.gate.settle(estimated, 0)
                label = (
                    "bad_response"
                    if isinstance(exc, httpx.DecodingError | TooLarge)
                    else "protocol"
                )
                raise ModelError(
                    label, self._failure(f"{type(exc).__name__}: {exc}", attempts), attempts
                ) from None
            else:
                if response.is_success:
                    self.gate.breaker.success()
                    self._report_circuit()
                    return data, response.headers.get(SCRIPTED_HEADER, "").lower() == "true"
                status = response.status_code
                reason, detail = (
                    _status_reason(status),
                    _error_detail(status, data if isinstance(data, bytes) else b""),
                )
                wait = _retry_after(response.headers)
            self.gate.settle(estimated, 0)  # a refused request used no tokens
            if status != 429 and 400 <= status < 500:
                raise ModelError(reason, self._failure(detail, attempts), attempts)
            if status != 429:
                self.gate.breaker.failure()
                self._report_circuit()
            if self._pausing():
                continue  # the call now waits for the circuit, not for its retries
            if attempts > self.tier.max_retries:
                raise ModelError(reason, self._failure(detail, attempts), attempts)
            if wait is None:
                wait = self._backoff(attempts)
            elif wait > self._max_retry_after_s:
                raise ModelError(
                    reason,
                    self._failure(
                        f"{detail} (asks to wait {wait:g}s, "
                        f"more than {self._max_retry_after_s:g}s)",
                        attempts,
                    ),
                    attempts,
                )
            elif reason == "rate_limited":
                self.gate.pause(wait)
            MODEL_RETRIES.labels(self.model, reason).inc()
            log.info(
                "model call retried",
                extra={"model": self.model, "reason": reason, "attempt": attempts, "wait_s": wait},
            )
            await asyncio.sleep(wait)

    async def _attempt(self, body: dict[str, Any]) -> tuple[Reply, bytes | dict[str, Any]]:
        """One request and its whole body within ``timeout_s``, read at most
        ``MAX_RESPONSE_BYTES`` (decoded, so a lying ``Content-Encoding`` fails here). A
        streamed answer is read as events within its first-chunk and idle bounds instead,
        and returned assembled."""
        tier = self.tier
        first_s = (tier.first_token_timeout_s or tier.timeout_s) if tier.stream else tier.timeout_s
        reader: StreamReader | None = None
        try:
            async with asyncio.timeout(first_s) as timer:
                async with self.profile.send(body) as response:
                    streamed = response.headers.get("Content-Type", "").startswith(
                        "text/event-stream"
                    )
                    if tier.stream and response.is_success and streamed:
                        reader = StreamReader(
                            self.profile.assembler(),
                            timer,
                            tier.idle_timeout_s or tier.timeout_s,
                            MAX_RESPONSE_BYTES,
                        )
                        return response, await reader.read(response)
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > MAX_RESPONSE_BYTES:
                            raise TooLarge(f"the answer is over {MAX_RESPONSE_BYTES} bytes")
                        chunks.append(chunk)
        except TimeoutError:
            if reader is not None and reader.chunks:  # silent after it began: not retried
                raise reader.broken(
                    "stream_stalled",
                    f"the stream sent nothing for {tier.idle_timeout_s or tier.timeout_s:g}s",
                ) from None
            raise
        return response, b"".join(chunks)

    def _timeout_detail(self) -> str:
        if self.tier.stream:
            first_s = self.tier.first_token_timeout_s or self.tier.timeout_s
            return f"no first chunk within {first_s:g}s"
        return f"no whole answer within {self.tier.timeout_s:g}s"

    def _pausing(self) -> bool:
        return self.tier.on_outage == "pause" and self.gate.breaker.state is not (
            CircuitState.CLOSED
        )

    async def _through_circuit(self, attempts: int) -> None:
        """Pass the tier's circuit. While it is open (or another caller holds its probe),
        fail fast, or with ``on_outage: pause`` wait until it lets this call through."""
        breaker = self.gate.breaker
        waited = False
        while not breaker.allow():
            self._report_circuit()
            if self.tier.on_outage == "fail":
                raise self._circuit_open(attempts)
            if not waited:
                log.warning(
                    "model call held: tier is down",
                    extra={"tier": self.name, "next_probe_s": round(breaker.retry_in(), 3)},
                )
                waited = True
            await asyncio.sleep(min(max(breaker.retry_in(), 0.05), CIRCUIT_POLL_S))
        self._report_circuit()

    def _circuit_open(self, attempts: int) -> ModelError:
        breaker = self.gate.breaker
        return ModelError(
            "circuit_open",
            (
                f"model {self.model!r} at {self.url} not called: the circuit of tier "
                f"{self.name!r} is open after {breaker.consecutive_failures} consecutive "
                f"failures (next probe in {breaker.retry_in():.1f}s; {attempts - 1} attempts "
                "made by this call)"
            ),
            attempts - 1,
        )

    def _report_circuit(self) -> None:
        MODEL_CIRCUIT_STATE.labels(self.name).set(self.gate.breaker.state)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half seeded-random."""
        ceiling = min(self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _failure(self, detail: str, attempts: int) -> str:
        tries = "attempt" if attempts == 1 else "attempts"
        return f"model {self.model!r} at {self.url} failed after {attempts} {tries}: {detail}"

    def _usage(
        self,
        payload: dict[str, Any] | None,
        attempts: int,
        started: float,
        messages: list[Message],
        *,
        partial: bool = False,
    ) -> Usage:
        """What the answer (``None`` when it is no JSON object) says it used. A token count
        the answer does not report, or reports as something other than a count, is estimated,
        and the usage marked so: a silent or garbled endpoint must still count against the
        budgets. Of a ``partial`` answer (a broken stream) the output is at least the
        estimate of the text that arrived, and the usage is marked estimated."""
        counts = self.profile.counts(payload or {})
        counted_in, counted_out = counts.tokens_in, counts.tokens_out
        # a count missing or malformed is estimated: it must still count against the budgets
        tokens_in = estimate_tokens(messages) if counted_in is None else counted_in
        reply = self.profile.reply_text(payload or {})
        guessed_out = (
            estimate_tokens([{"role": "assistant", "content": reply}]) - MESSAGE_OVERHEAD_TOKENS
        )
        tokens_out = guessed_out if counted_out is None else counted_out
        if partial:  # counts sent before the stream broke are not the final ones
            tokens_out = max(tokens_out, guessed_out)
        estimated = partial or counted_in is None or counted_out is None
        if estimated:
            USAGE_ESTIMATED.labels(self.model).inc()
            log.warning(
                "model sent no usable token counts; tokens estimated",
                extra={"model": self.model, "tokens_in": tokens_in, "tokens_out": tokens_out},
            )
        answered_by = (payload or {}).get("model")
        return Usage(
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=cost_usd(
                self.tier,
                tokens_in,
                tokens_out,
                cached=counts.cached,
                cache_write=counts.cache_write,
                reasoning=counts.reasoning,
            ),
            latency_ms=(time.perf_counter() - started) * 1000,
            model=clean_text(answered_by) if isinstance(answered_by, str) else self.model,
            calls=attempts,
            estimated=estimated,
            tokens_cached=min(counts.cached, tokens_in),
            tokens_cache_write=min(counts.cache_write, tokens_in),
            tokens_reasoning=min(counts.reasoning, tokens_out),
        )

    async def aclose(self) -> None:
        await self.profile.aclose()
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
