"""The behaviour of a ``kind: python`` agent: the user's function decides the step.

Whatever the function does, the step ends with exactly one outbox record: the function's
``Result`` turned into an event, a ``step.failed`` naming what went wrong (an exception's
last traceback line, a timeout, a wrong return value, an undeclared event type, writes that
are not JSON), or a ``step.refused`` when it asked to spend past a budget.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import msgspec

from choreo.agent import step as steps
from choreo.agent.sdk import Result, Step, as_agent
from choreo.budget.allowance import OverBudget
from choreo.models.client import ModelClient, ModelConfigError
from choreo.schemas import Envelope
from choreo.schemas.codec import as_text, clean_text, clean_value, to_json
from choreo.schemas.errors import BudgetExhausted
from choreo.schemas.ids import fingerprint
from choreo.schemas.records import FAIL, FINISH, STEP_FAILED, STEP_REFUSED
from choreo.spec.check import known_fields
from choreo.spec.mesh import AgentSpec, MeshSpec
from choreo.tools import imports
from choreo.tools.boundary import UserCodeRaised, describe, guarded

#: Characters of a step's writes shown as its output in the hop record.
TEXT_CHARS = 2000


def last_line(exc: BaseException) -> str:
    """The last line of an exception's traceback: ``ValueError: no such order`` (its type
    and message alone when even that line cannot be made)."""
    try:
        return traceback.format_exception_only(exc)[-1].strip()
    except Exception:
        return describe(exc)


def _clients(spec: MeshSpec, own: str) -> dict[str, ModelClient]:
    """A client per tier this process can reach: every tier with an endpoint; the agent's
    own tier (``own``) must have one, others without are left out."""
    clients = {}
    for name, tier in sorted(spec.models.items()):
        try:
            clients[name] = ModelClient.for_tier(name, tier)
        except ModelConfigError:
            if name == own:
                raise
    return clients


class PythonAgent:
    """Imports the handler (at start: a bad path fails the service before it consumes) and
    runs it once per event, within the spec's (or the decorator's) ``timeout_s``.

    A handler that blocks the event loop (``time.sleep``, a blocking driver) cannot be
    interrupted by the timeout: run such code with ``asyncio.to_thread``.
    """

    def __init__(self, spec: MeshSpec, agent: AgentSpec) -> None:
        assert agent.handler is not None  # checked at load time
        imports.add_to_path(spec.python_path)
        self.agent = agent
        self.handler = as_agent(imports.resolve(agent.handler))
        self.timeout_s = self.handler.timeout_s or agent.timeout_s
        self.clients = _clients(spec, agent.model)
        #: The fields a step may write: with a declared ``state``, those the spec knows;
        #: without one, any (``None``).
        self.fields = known_fields(spec) if spec.state else None

    @property
    def models(self) -> list[str]:
        """The model of the agent's own tier (for metrics), if it has one."""
        client = self.clients.get(self.agent.model)
        return [client.model] if client else []

    async def step(self, event: Envelope) -> list[Envelope]:
        step = Step(
            event,
            agent=self.agent.name,
            clients=self.clients,
            default_tier=self.agent.model or None,
            persona=self.agent.persona,
            reads=self.agent.reads,
        )
        name = self.agent.name
        try:
            result: Any = await asyncio.wait_for(guarded(self.handler(step)), self.timeout_s)
        except TimeoutError:
            return [
                self._ended(
                    event,
                    step,
                    STEP_FAILED,
                    f"{name}: handler did not return within {self.timeout_s:g}s",
                )
            ]
        except (BudgetExhausted, OverBudget) as exc:  # a budget said no before spending more
            return [self._ended(event, step, STEP_REFUSED, f"{name}: {exc}")]
        except Exception as exc:  # the user's bug, of any class, ends the step, not the service
            cause = exc.original if isinstance(exc, UserCodeRaised) else exc
            step.log.warning("handler raised", exc_info=cause)
            return [self._ended(event, step, STEP_FAILED, f"{name}: {last_line(cause)}")]
        if not isinstance(result, Result):
            return [
                self._ended(
                    event,
                    step,
                    STEP_FAILED,
                    f"{name}: handler returned {type(result).__name__}, "
                    "not a choreo.Result (use step.emit, step.finish, step.fail)",
                )
            ]
        try:
            return [self._outcome(event, step, result)]
        except Exception as exc:  # a Result built by hand from values that do not fit
            reason = f"{name}: handler returned an unusable Result: {last_line(exc)}"
            return [self._ended(event, step, STEP_FAILED, clean_text(reason))]

    def _outcome(self, event: Envelope, step: Step, result: Result) -> Envelope:
        name = self.agent.name
        writes = clean_value(dict(result.writes))
        unknown = sorted(map(str, set(writes) - self.fields)) if self.fields is not None else []
        if unknown:
            return self._ended(
                event,
                step,
                STEP_FAILED,
                f"{name}: writes state fields the spec does not declare: {unknown} "
                "(declare them in the spec's state)",
            )
        output = clean_value(result.output)
        try:
            text = clean_text(str(result.text)) if result.text is not None else as_text(writes)
            to_json(writes)
            to_json(output)
        except (TypeError, msgspec.EncodeError) as exc:
            return self._ended(
                event, step, STEP_FAILED, f"{name}: writes or output are not JSON: {exc}"
            )
        payload: dict[str, Any] = {
            "text": text[:TEXT_CHARS],
            "input_fingerprint": self._fingerprint(event),
        }
        if result.action == "emit":
            if result.event_type not in self.agent.emit:
                return self._ended(
                    event,
                    step,
                    STEP_FAILED,
                    f"{name}: emitted {result.event_type!r}, not in its emit "
                    f"list {self.agent.emit}",
                )
            event_type = result.event_type
        elif result.action == "finish":
            event_type = FINISH
            if result.output_field is not None:
                payload["output_field"] = result.output_field
            else:
                payload["output"] = output
        else:
            event_type = FAIL
            payload["reason"] = clean_text(f"{name} ended the trace as failed: {result.reason}")
        return steps.step_event(
            self.agent, event, event_type, delta=writes, payload=payload, usage=step.usage
        )

    def _ended(self, event: Envelope, step: Step, event_type: str, reason: str) -> Envelope:
        return steps.step_event(
            self.agent,
            event,
            event_type,
            usage=step.usage,
            payload={"reason": clean_text(reason), "input_fingerprint": self._fingerprint(event)},
        )

    @staticmethod
    def _fingerprint(event: Envelope) -> str:
        """What this step saw: its event type, payload and state (for loop detection)."""
        return fingerprint(
            to_json({"type": event.type, "payload": event.payload, "state": event.state})
        )

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
