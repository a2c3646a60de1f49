"""``@choreo.agent``: an async Python function as a mesh agent.

The function receives one event as a read-only ``Step`` and returns a ``Result``: what the
step writes to the trace's state and where the work goes next. The mesh's consumer loop runs
it with every guarantee a model agent has (one consumer group, commit after the outbox
record is acknowledged, deterministic step ids, refusal over budget, drain on SIGTERM, spans
and metrics); the function never sees Kafka.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, overload

from choreo.budget.left import BudgetLeft, left, plus
from choreo.models.errors import ModelError
from choreo.schemas import Envelope, Usage
from choreo.schemas.errors import BudgetExhausted, HandlerError, UndeclaredRead

if TYPE_CHECKING:  # the agent service hands a step its clients; the SDK never builds one
    from choreo.models.client import ModelClient

Action = Literal["emit", "finish", "fail"]


@dataclass(frozen=True)
class Result:
    """What one step decided. Make it with ``Step.emit``, ``Step.finish`` or ``Step.fail``.

    ``writes`` is the step's delta: state fields and their new values, folded by the mesh's
    reducers (an ``append`` field takes one item, an ``add`` field a number). ``emit`` sends
    the work on as ``event_type`` (one of the agent's ``emit`` list); ``finish`` ends the
    trace as completed with state field ``output_field`` (or ``output`` itself) as its
    result; ``fail`` ends it as failed with ``reason``.
    """

    action: Action
    writes: Mapping[str, Any] = field(default_factory=dict)
    event_type: str | None = None
    output_field: str | None = None
    output: Any = None
    reason: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Reply:
    """A model's answer to ``Step.complete``; ``usage`` is that call's share of the step's."""

    text: str
    usage: Usage


class _TraceLog(logging.LoggerAdapter):
    """A logger whose every line carries the trace id and hop, plus the call's own extras."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


class DeclaredState(Mapping[str, Any]):
    """A step's read-only view of the trace's state, limited to the fields its agent declares
    in ``reads:`` (and ``input``); with ``reads`` ``None``, every field.

    Reading a field outside ``reads`` (``state[name]``, ``state.get(name)``, ``name in
    state``) raises :class:`choreo.errors.UndeclaredRead`: the event never carried it, and a
    silent ``None`` would read as "not written yet". Iterating yields the declared fields
    present.
    """

    def __init__(self, fields: Mapping[str, Any], agent: str, reads: Sequence[str] | None):
        self._fields = MappingProxyType(copy.deepcopy(dict(fields)))
        self._agent = agent
        self._reads = None if reads is None else frozenset([*reads, "input"])

    def _check(self, name: str) -> None:
        if self._reads is not None and name not in self._reads:
            raise UndeclaredRead(self._agent, name, sorted(self._reads - {"input"}))

    def __getitem__(self, name: str) -> Any:
        self._check(name)
        return self._fields[name]

    def get(self, name: str, default: Any = None) -> Any:
        self._check(name)
        return self._fields.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._check(name)
        return name in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"DeclaredState({dict(self._fields)!r})"


class Step:
    """One event as an agent function sees it. Read-only: the step changes the trace only
    through the ``Result`` it returns.

    Attributes: ``agent`` (this agent's name), ``trace_id``, ``hop`` (this step's number in
    the trace), ``event_type`` (what it was sent as), ``input`` (the task's text),
    ``state`` (a read-only copy of the state fields it was sent with: those its agent
    declares in ``reads:``, see :class:`DeclaredState`), ``version`` (that state's
    version), ``payload`` (the event's payload), ``log`` (a logger bound to the trace).
    ``left`` and ``usage`` are live: they change as the step calls its model.
    """

    def __init__(
        self,
        event: Envelope,
        *,
        agent: str,
        clients: Mapping[str, ModelClient],
        default_tier: str | None,
        persona: str = "",
        reads: Sequence[str] | None = None,
    ) -> None:
        self._event = event
        self._clients = clients
        self._default_tier = default_tier
        self._persona = persona
        self._usage = Usage()
        self.agent = agent
        self.trace_id = event.trace_id
        self.hop = event.hop + 1
        self.event_type = event.type
        self.version = event.state_version
        self.state: Mapping[str, Any] = DeclaredState(event.state or {}, agent, reads)
        self.payload: Mapping[str, Any] = MappingProxyType(copy.deepcopy(event.payload))
        self.input: str = str(self.state.get("input") or event.payload.get("input") or "")
        self.log = _TraceLog(
            logging.getLogger(f"choreo.agent.{agent}"),
            {"trace_id": event.trace_id, "hop": self.hop, "agent": agent},
        )

    @property
    def usage(self) -> Usage:
        """What this step's model calls consumed so far (tokens, US dollars, calls)."""
        return self._usage

    @property
    def left(self) -> BudgetLeft:
        """What is left of each of the trace's budgets, this step's spending included."""
        return left(self._event, self._usage)

    @property
    def tiers(self) -> list[str]:
        """The model tiers this step may call (the mesh's declared tiers)."""
        return sorted(self._clients)

    async def complete(
        self,
        prompt: str | Sequence[Mapping[str, Any]],
        *,
        system: str | None = None,
        tier: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Reply:
        """Ask a model; the call is counted in the step's usage (and the trace's totals).

        ``prompt`` is the user message (after ``system``, default the agent's persona) or a
        whole chat. ``tier`` defaults to the agent's ``model``. ``max_tokens`` is capped by
        the trace's tokens left; the call ends by the trace's deadline. Raises
        ``BudgetExhausted`` when a budget is used up, ``KeyError`` for an undeclared tier, and
        the client's ``ModelError`` once retries cannot help or the deadline has passed (its
        billed tokens are counted in ``usage`` all the same).
        """
        remaining = self.left
        exhausted = remaining.exhausted()
        if exhausted is not None:
            raise BudgetExhausted(exhausted)
        name = tier or self._default_tier
        if name is None or name not in self._clients:
            raise KeyError(f"model tier {name!r} (declared: {', '.join(self.tiers)})")
        if isinstance(prompt, str):
            head = system if system is not None else self._persona
            messages = ([{"role": "system", "content": head}] if head else []) + [
                {"role": "user", "content": prompt}
            ]
        else:
            messages = [dict(m) for m in prompt]
        try:
            completion = await self._clients[name].complete(
                messages,
                agent=self.agent,
                temperature=temperature,
                max_tokens=remaining.cap(max_tokens),
                deadline=self._event.budget.deadline,
            )
        except ModelError as exc:  # what the provider billed for it still counts
            self._usage = plus(self._usage, exc.usage)
            raise
        self._usage = plus(self._usage, completion.usage)
        return Reply(completion.text, completion.usage)

    def emit(
        self, event_type: str, writes: Mapping[str, Any] | None = None, *, text: str | None = None
    ) -> Result:
        """Send the work on as ``event_type``, with ``writes`` folded into the state first.
        ``text`` is what the hop record shows as this step's output."""
        return Result("emit", dict(writes or {}), event_type=event_type, text=text)

    def finish(
        self,
        output_field: str | None = None,
        *,
        output: Any = None,
        writes: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> Result:
        """End the trace as completed; its result is state field ``output_field`` after
        ``writes`` are folded, else ``output``."""
        return Result(
            "finish", dict(writes or {}), output_field=output_field, output=output, text=text
        )

    def fail(self, reason: str, writes: Mapping[str, Any] | None = None) -> Result:
        """End the trace as failed, with ``reason`` in its terminal record."""
        return Result("fail", dict(writes or {}), reason=reason)


Handler = Callable[[Step], Awaitable[Result]]


@dataclass(frozen=True)
class Agent:
    """An agent function and its options, as ``@choreo.agent`` made it. Calling it runs
    the function (so tests can call it with a ``Step``)."""

    func: Handler
    name: str
    description: str
    timeout_s: float | None = None

    def __call__(self, step: Step) -> Awaitable[Result]:
        return self.func(step)


def as_agent(target: Any) -> Agent:
    """``target`` as an ``Agent``: itself, or a bare ``async def`` wrapped with defaults.

    Raises ``HandlerError`` when it is neither.
    """
    if isinstance(target, Agent):
        return target
    if inspect.iscoroutinefunction(target):
        return _wrap(target, None)
    raise HandlerError(f"{target!r} is not an async function nor a @choreo.agent")


def _wrap(func: Handler, timeout_s: float | None) -> Agent:
    if not inspect.iscoroutinefunction(func):
        raise HandlerError(f"@choreo.agent needs an async def, not {func!r}")
    return Agent(func, func.__name__, inspect.getdoc(func) or "", timeout_s)


@overload
def agent(func: Handler, /) -> Agent: ...


@overload
def agent(*, timeout_s: float | None = None) -> Callable[[Handler], Agent]: ...


def agent(
    func: Handler | None = None, /, *, timeout_s: float | None = None
) -> Agent | Callable[[Handler], Agent]:
    """Make an ``async def f(step: choreo.Step) -> choreo.Result`` a mesh agent.

    Use bare (``@choreo.agent``) or with options (``@choreo.agent(timeout_s=5)``: a step
    running longer fails, overriding the spec's ``timeout_s``). Name it in the mesh spec::

        agents:
          - name: lookup
            kind: python
            handler: orders:lookup      # module orders.py next to the mesh file
            subscribe: [order.asked]
            emit: [order.found]
            model: small                # the tier step.complete() uses (optional)

    ``choreo run agent --agent lookup`` (or ``choreo up``) runs it. An exception the
    function raises ends the step (and the trace) as failed with the exception's last
    traceback line; so does a return value that is not a ``Result``, an undeclared event
    type, or writes that are not JSON. ``BudgetExhausted`` refuses the step. The service
    goes on with the next event in every case.
    """
    if func is not None:
        return _wrap(func, timeout_s)
    return lambda f: _wrap(f, timeout_s)
