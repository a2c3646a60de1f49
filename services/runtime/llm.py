"""OpenAI-compatible chat client: retries, rate limits, a circuit breaker, token and cost
accounting.

One client per model tier per process, shared by every agent in it: the tier's concurrency
limit, token buckets and circuit are properties of the provider, not of an agent. Rate limits
and outages are retried with exponential backoff (seeded jitter, so a run is reproducible);
a ``Retry-After`` is honoured by every caller of the tier, not only the one that got it. After
``circuit_failures`` consecutive failed requests the tier's circuit opens and calls fail fast
until a probe succeeds (see services.runtime.ratelimit). Anything else fails fast as a
``ModelError`` whose ``reason`` is a short, bounded label fit for metrics and terminal records.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import httpx
from opentelemetry import trace
from pydantic import ValidationError

from choreo.schemas import Usage
from choreo.services.model_server.server import SCRIPTED_HEADER
from choreo.services.runtime import telemetry
from choreo.services.runtime.context import estimate_tokens
from choreo.services.runtime.metrics import (
    COST,
    MODEL_CALL_DURATION,
    MODEL_CALL_ERRORS,
    MODEL_CIRCUIT_STATE,
    MODEL_RETRIES,
    TOKENS,
)
from choreo.services.runtime.ratelimit import TierGate
from choreo.services.runtime.spec import ModelTier

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

Message = dict[str, str]

SCRIPTED_PROVIDER = "choreo.scripted"
_OVERRIDES = {"base_url": "BASE_URL", "model": "MODEL", "temperature": "TEMPERATURE",
              "price_in_per_mtok": "PRICE_IN_PER_MTOK",
              "price_out_per_mtok": "PRICE_OUT_PER_MTOK"}


@dataclass(frozen=True)
class Completion:
    """One model answer; ``scripted`` is true when an offline scripted model wrote it."""

    text: str
    usage: Usage
    scripted: bool


class ModelError(RuntimeError):
    """A model call failed for good: retries exhausted, or an error that retrying cannot fix.

    ``reason`` is a bounded label: ``rate_limited``, ``http_<status>``, ``timeout``,
    ``connection``, ``bad_response`` or ``circuit_open`` (the tier's circuit refused the
    request). ``attempts`` counts the requests made.
    """

    def __init__(self, reason: str, message: str, attempts: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.attempts = attempts


class ModelConfigError(ValueError):
    """A model tier cannot be reached as configured; the message says what to set."""


def env_var(tier_name: str, suffix: str) -> str:
    """The name of a tier's override variable, e.g. ``CHOREO_MODEL_FAST_LOCAL_BASE_URL``."""
    return f"CHOREO_MODEL_{tier_name.upper().replace('-', '_')}_{suffix}"


def _resolve_tier(tier_name: str, tier: ModelTier, environ: Mapping[str, str]) -> ModelTier:
    overrides = {
        field: environ[env_var(tier_name, suffix)]
        for field, suffix in _OVERRIDES.items()
        if environ.get(env_var(tier_name, suffix))
    }
    unpriced = [env_var(tier_name, _OVERRIDES[f]) for f in ("price_in_per_mtok",
                                                            "price_out_per_mtok")
                if f not in overrides]
    if overrides.get("model", tier.model) != tier.model and unpriced:
        # the spec's prices are another model's: a cost from them would be wrong, and a
        # max_cost budget would not hold
        raise ModelConfigError(
            f"model tier {tier_name!r}: {env_var(tier_name, 'MODEL')} replaces the model, so "
            f"give its prices too (US dollars per million tokens): {', '.join(unpriced)}")
    if not overrides:
        resolved = tier
    else:
        try:
            resolved = ModelTier.model_validate({**tier.model_dump(), **overrides})
        except ValidationError as exc:
            bad = ", ".join(
                f"{env_var(tier_name, _OVERRIDES[str(err['loc'][0])])}: {err['msg']}"
                for err in exc.errors() if err["loc"] and err["loc"][0] in _OVERRIDES
            )
            raise ModelConfigError(
                f"model tier {tier_name!r}: bad override: {bad or exc}") from None
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


def _provider(host: str) -> str:
    """``gen_ai.provider.name``: OpenAI's own API by its host, else any OpenAI-compatible one."""
    return "openai" if host == "api.openai.com" else "openai_compatible"


def _status_reason(status: int) -> str:
    return "rate_limited" if status == 429 else f"http_{status}"


def _error_detail(response: httpx.Response) -> str:
    """The provider's error message when it sent one in the usual shape, else the status."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = None
    return f"HTTP {response.status_code}" + (f": {message}" if isinstance(message, str) else "")


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
                f"model tier {name!r} has no base_url (use ModelClient.for_tier)")
        self.tier = tier
        self.name = name
        self.url = tier.base_url.rstrip("/") + "/chat/completions"
        endpoint = httpx.URL(self.url)
        self._server_attributes = {  # the span attributes every call to this endpoint shares
            "gen_ai.provider.name": _provider(endpoint.host),
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
        headers = {"User-Agent": "choreo-mesh"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(tier.timeout_s),
            limits=httpx.Limits(max_connections=tier.concurrency),
        )

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
            log.warning("model tier has no API key", extra={
                "tier": tier_name, "api_key_env": tier.api_key_env})
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
    ) -> Completion:
        """One chat completion; raises ``ModelError`` once retrying cannot help."""
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": False}
        if self.temperature is not None:  # a tier without one: the model refuses it
            body["temperature"] = self.temperature if temperature is None else temperature
        if max_tokens is not None:
            body[self.tier.max_tokens_field] = max_tokens
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": self.model,
            **({"gen_ai.request.temperature": body["temperature"]}
               if "temperature" in body else {}),
            "gen_ai.agent.name": agent,
            **self._server_attributes,
        }
        estimated = estimate_tokens(messages) + (max_tokens or 0)
        started = time.perf_counter()
        with _tracer.start_as_current_span(
            f"chat {self.model}", kind=trace.SpanKind.CLIENT, attributes=attributes,
        ) as span:
            try:
                response, attempts = await self._post(body, estimated)
                completion = self._parse(response, attempts, started)
            except ModelError as exc:
                MODEL_CALL_ERRORS.labels(agent, self.model, exc.reason).inc()
                span.set_attribute("error.type", exc.reason)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                raise
            finally:
                MODEL_CALL_DURATION.labels(agent, self.model).observe(
                    time.perf_counter() - started)
            usage = completion.usage
            self.gate.settle(estimated, usage.tokens_in + usage.tokens_out)
            if completion.scripted:
                span.set_attribute("gen_ai.provider.name", SCRIPTED_PROVIDER)
            if telemetry.record_content():
                span.set_attributes({
                    "gen_ai.input.messages": json.dumps(messages),
                    "gen_ai.output.messages": json.dumps(
                        [{"role": "assistant", "content": completion.text}]),
                })
            span.set_attributes({
                "gen_ai.response.model": usage.model or self.model,
                "gen_ai.usage.input_tokens": usage.tokens_in,
                "gen_ai.usage.output_tokens": usage.tokens_out,
                "choreo.cost_usd": usage.cost,
                "choreo.model.calls": usage.calls,
                "choreo.model.scripted": completion.scripted,
            })
        TOKENS.labels(agent, self.model, "in").inc(usage.tokens_in)
        TOKENS.labels(agent, self.model, "out").inc(usage.tokens_out)
        COST.labels(agent, self.model).inc(usage.cost)
        return completion

    async def _post(self, body: dict[str, Any], estimated: int) -> tuple[httpx.Response, int]:
        """POST through the tier's gate, with retries on 429, 5xx, timeouts and connection
        errors. Failures of the tier (not 429s, the provider's flow control, nor 4xx, the
        request's own fault) count towards opening its circuit."""
        attempts = 0
        while True:
            attempts += 1
            self._check_circuit(attempts)
            await self.gate.admit(estimated)
            wait: float | None = None
            status = 0
            try:
                async with self._slots:
                    response = await self._http.post(self.url, json=body)
            except httpx.TimeoutException:
                reason, detail = "timeout", f"no answer within {self.tier.timeout_s:g}s"
            except httpx.TransportError as exc:
                reason, detail = "connection", f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    self.gate.breaker.success()
                    self._report_circuit()
                    return response, attempts
                status = response.status_code
                reason, detail = _status_reason(status), _error_detail(response)
                wait = parse_retry_after(response.headers.get("Retry-After"))
            self.gate.settle(estimated, 0)  # a refused request used no tokens
            if status != 429 and 400 <= status < 500:
                raise ModelError(reason, self._failure(detail, attempts), attempts)
            if status != 429:
                self.gate.breaker.failure()
                self._report_circuit()
            if attempts > self.tier.max_retries:
                raise ModelError(reason, self._failure(detail, attempts), attempts)
            if wait is None:
                wait = self._backoff(attempts)
            elif wait > self._max_retry_after_s:
                raise ModelError(reason, self._failure(
                    f"{detail} (asks to wait {wait:g}s, more than {self._max_retry_after_s:g}s)",
                    attempts), attempts)
            elif reason == "rate_limited":
                self.gate.pause(wait)
            MODEL_RETRIES.labels(self.model, reason).inc()
            log.info("model call retried", extra={
                "model": self.model, "reason": reason, "attempt": attempts, "wait_s": wait})
            await asyncio.sleep(wait)

    def _check_circuit(self, attempts: int) -> None:
        """Fail fast while the tier's circuit is open (or another caller holds its probe)."""
        breaker = self.gate.breaker
        allowed = breaker.allow()
        self._report_circuit()
        if not allowed:
            raise ModelError("circuit_open", (
                f"model {self.model!r} at {self.url} not called: the circuit of tier "
                f"{self.name!r} is open after {breaker.consecutive_failures} consecutive "
                f"failures (next probe in {breaker.retry_in():.1f}s; {attempts - 1} attempts "
                "made by this call)"), attempts - 1)

    def _report_circuit(self) -> None:
        MODEL_CIRCUIT_STATE.labels(self.name).set(self.gate.breaker.state)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half seeded-random."""
        ceiling = min(self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _failure(self, detail: str, attempts: int) -> str:
        tries = "attempt" if attempts == 1 else "attempts"
        return f"model {self.model!r} at {self.url} failed after {attempts} {tries}: {detail}"

    def _parse(self, response: httpx.Response, attempts: int, started: float) -> Completion:
        try:
            payload = response.json()
            text = payload["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("message content is not text")
            usage = payload.get("usage") or {}
            tokens_in = int(usage.get("prompt_tokens") or 0)
            tokens_out = int(usage.get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise ModelError("bad_response", self._failure(
                f"not a chat completion ({type(exc).__name__}: {exc})", attempts), attempts
            ) from None
        answered_by = payload.get("model")
        cost = (tokens_in * self.tier.price_in_per_mtok
                + tokens_out * self.tier.price_out_per_mtok) / 1e6
        return Completion(
            text=text,
            usage=Usage(
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                cost=cost,
                latency_ms=(time.perf_counter() - started) * 1000,
                model=answered_by if isinstance(answered_by, str) else self.model,
                calls=attempts,
            ),
            scripted=response.headers.get(SCRIPTED_HEADER, "").lower() == "true",
        )

    async def aclose(self) -> None:
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
