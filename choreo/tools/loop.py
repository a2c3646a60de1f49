"""A model agent's step with tools: ask the model, run the calls it asks for, send back the
results, until it answers without calls.

Bounded three ways: ``max_tool_calls`` per step (once reached, no tools are offered; calls
asked for anyway are answered with a refusal, once, and asking again fails the step), the
trace's token, cost and time budgets (checked before every model call, whose ``max_tokens``
is capped by the tokens left), and each call's timeout. Several calls asked for at once run
concurrently. A call that fails in any way (bad arguments, an exception, a timeout, an error
result) becomes an error message for the model, never an exception out of the step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from opentelemetry.trace import StatusCode

from choreo.budget.left import BudgetLeft, plus
from choreo.models.client import Completion, Message, ModelClient, ModelError, ToolCall
from choreo.observe import telemetry
from choreo.schemas import ToolCallRecord, Usage
from choreo.schemas.codec import clean_text
from choreo.spec.mesh import AgentSpec, FunctionToolSpec, McpServerSpec, ToolSpec
from choreo.tools import imports
from choreo.tools.base import Tool, ToolFailure, openai_tool
from choreo.tools.boundary import describe, guarded
from choreo.tools.errors import ToolSetupError
from choreo.tools.function import FunctionTool
from choreo.tools.isolated import ProcessTool
from choreo.tools.mcp import McpServer
from choreo.tools.names import capped, fit_names
from choreo.tools.record import canonical_arguments, make_record, prime
from choreo.tools.sandbox.call import SandboxCallTool
from choreo.tools.threads import ToolThreads

log = logging.getLogger(__name__)

#: What a refused call (past ``max_tool_calls``) tells the model.
LIMIT_MESSAGE = "ERROR: tool call limit reached ({limit} per step); answer now with what you have."


class ToolBox:
    """An agent's tools: its Python functions (imported now), its MCP servers (started on
    ``start``) and the sandbox. ``aclose`` stops the servers."""

    def __init__(self, agent: AgentSpec, python_path: Sequence[Path] = ()) -> None:
        imports.add_to_path(python_path)
        cwd = python_path[-1] if python_path else None  # the mesh's folder comes last
        self.agent = agent
        #: The agent's sync tools' threads, as many as its spec's ``tool_threads``.
        self.threads = ToolThreads(agent.tool_threads, f"choreo-tool-{agent.name}")
        self.functions: list[Tool] = []
        self.servers: list[McpServer] = []
        self.sandbox: ToolSpec | None = None
        for spec in agent.called_tools:
            if isinstance(spec, FunctionToolSpec):
                tool = FunctionTool(
                    imports.resolve(spec.function),
                    threads=self.threads,
                    timeout_s=spec.timeout_s or agent.tool_timeout_s,
                )
                self.functions.append(
                    ProcessTool(spec.function, tool, python_path)
                    if spec.isolation == "process"
                    else tool
                )
            elif isinstance(spec, McpServerSpec):
                self.servers.append(McpServer(spec, cwd))
            else:
                self.sandbox = spec
        self._listed: list[Tool] | None = None
        #: What ``start`` changed in the tools offered (renamed, left out), for hop records.
        self.notes: list[str] = []
        self._lock = asyncio.Lock()
        self._warming: asyncio.Task[None] | None = None

    def warm(self) -> None:
        """Start listing now, in the background, when an event loop runs (the service's
        start-up); a failure is logged and retried by the first step's ``start``."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._warming = loop.create_task(self.start())
        self._warming.add_done_callback(_log_failure)

    async def start(self) -> None:
        """List every MCP server's tools (once; retried on the next step if it failed).

        Raises ``ToolSetupError`` when a server cannot be listed or two tools share a name.
        """
        async with self._lock:
            if self._listed is not None:
                return
            listed = list(self.functions)
            self.notes = []
            try:
                for server in self.servers:
                    fitted, notes = fit_names(
                        await server.start(), [t.name for t in listed] + ["sandbox"]
                    )
                    listed += fitted
                    self.notes += notes
            except Exception as exc:
                await self.aclose()
                raise ToolSetupError(str(exc)) from exc
            if self.notes:
                log.warning(
                    "tools renamed or left out: the providers' name rule",
                    extra={"agent": self.agent.name, "notes": self.notes},
                )
            names = [t.name for t in listed] + (["sandbox"] if self.sandbox else [])
            clashes = sorted({n for n in names if names.count(n) > 1})
            if clashes:
                await self.aclose()
                raise ToolSetupError(f"tools offered twice under one name: {clashes}")
            self._listed = listed
            prime(names)

    def for_step(self, state: dict[str, Any]) -> dict[str, Tool]:
        """The tools of one step by name (the sandbox gets the step's state files)."""
        tools = list(self._listed or ())
        if self.sandbox is not None:
            tools.append(SandboxCallTool(self.sandbox, state))
        return {t.name: t for t in tools}

    async def aclose(self) -> None:
        for server in self.servers:
            await server.aclose()


#: The (event, agent, tier) lines logged already: said once per process, not per step.
_logged: set[tuple[str, str, str]] = set()


def _log_once(event: str, agent: str, tier: str, reason: str) -> None:
    if (event, agent, tier) not in _logged:
        _logged.add((event, agent, tier))
        log.warning(event, extra={"agent": agent, "tier": tier, "reason": reason})


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("tools not listed at start-up", extra={"error": str(task.exception())})


async def run_call(
    tools: dict[str, Tool], call: ToolCall, default_timeout_s: float
) -> tuple[str, ToolCallRecord]:
    """One call as the ``tool`` message's text and its hop-record entry; never raises."""
    arguments, canonical = canonical_arguments(call.arguments)
    tool = tools.get(call.name)
    started = time.perf_counter()
    with telemetry.tool_span(call.name) as span:
        span.set_attribute("gen_ai.tool.call.id", call.id)
        if telemetry.record_content():
            span.set_attribute("gen_ai.tool.call.arguments", canonical)
        try:
            if tool is None:
                raise ToolFailure(
                    "invalid", f"no tool named {call.name!r} (tools: {', '.join(sorted(tools))})"
                )
            if arguments is None:
                raise ToolFailure("invalid", "arguments must be a JSON object")
            timeout_s = tool.timeout_s or default_timeout_s
            try:
                text = await asyncio.wait_for(guarded(tool.call(arguments)), timeout_s)
            except TimeoutError:
                raise ToolFailure(
                    "timeout", f"{call.name} did not answer within {timeout_s:g}s"
                ) from None
            status = "ok"
        except ToolFailure as exc:
            status, text = exc.status, f"ERROR: {exc}"
        except Exception as exc:  # a tool's own bug, of any class: the model is told
            status, text = "error", f"ERROR: {describe(exc)}"
        text = clean_text(text)  # the model, the hop record and the span see the same text
        record = make_record(
            call.name,
            canonical,
            status,
            (time.perf_counter() - started) * 1000,
            text,
            tool.server if tool else None,
        )
        span.set_attributes(
            {
                "choreo.tool.status": status,
                "choreo.tool.args_sha256": record.args_sha256,
                "choreo.tool.result_chars": record.result_chars,
            }
        )
        if tool is not None and tool.server:
            span.set_attribute("choreo.tool.server", tool.server)
        if telemetry.record_content():
            span.set_attribute("gen_ai.tool.call.result", text)
        if status != "ok":
            span.set_status(StatusCode.ERROR, text[:200])
    return text, record


@dataclass
class Conversation:
    """How a step's model ↔ tool loop ended.

    ``completion`` is the model's last answer (``None`` when the loop stopped first);
    ``refused`` names the budget that ran out; ``error`` is why the loop failed.
    """

    messages: list[Message]
    usage: Usage = field(default_factory=Usage)
    calls: list[ToolCallRecord] = field(default_factory=list)
    completion: Completion | None = None
    refused: str | None = None
    error: str | None = None
    #: What was not offered, and why (a tier's ``max_tools``), for the hop record.
    notes: list[str] = field(default_factory=list)


async def converse(
    client: ModelClient,
    messages: list[Message],
    tools: dict[str, Tool],
    *,
    agent: AgentSpec,
    left: Callable[[Usage], BudgetLeft],
    temperature: float | None,
    deadline: datetime | None,
    spent: Usage | None = None,
    max_tools: int | None = None,
) -> Conversation:
    """Run the loop from ``messages``; ``left(usage)`` is what the trace's budgets allow
    after this step spent ``usage`` (``spent`` is counted from the start). Every model call
    ends by ``deadline`` (the trace's); a failed call's billed tokens count in ``usage``. At
    most ``max_tools`` tools are offered (the tier's rule, choreo.tools.names)."""
    talk = Conversation(list(messages), usage=spent or Usage())
    offered = [openai_tool(t) for t in tools.values()] if agent.max_tool_calls else []
    if max_tools is not None:
        offered, note = capped(offered, max_tools, client.name)
        if note is not None:
            talk.notes.append(note)
            _log_once("tools capped", agent.name, client.name, note)
    refusals = 0
    while True:
        remaining = left(talk.usage)
        talk.refused = remaining.exhausted()
        if talk.refused is not None:
            return talk
        try:
            completion = await client.complete(
                talk.messages,
                agent=agent.name,
                temperature=temperature,
                max_tokens=remaining.cap(agent.max_tokens),
                tools=offered or None,
                deadline=deadline,
            )
        except ModelError as exc:
            talk.usage = plus(talk.usage, exc.usage)
            talk.error = f"model call failed ({exc.reason}): {exc}"
            return talk
        talk.usage = plus(talk.usage, completion.usage)
        if not completion.tool_calls:
            talk.completion = completion
            return talk
        allowed = max(0, agent.max_tool_calls - len(talk.calls))
        if allowed == 0:
            refusals += 1
            if refusals > 1:  # told once that the limit is reached, and it asked again
                talk.error = (
                    f"the model kept asking for tools past the limit of "
                    f"{agent.max_tool_calls} calls per step"
                )
                return talk
        talk.messages.append(completion.message())
        ran = await asyncio.gather(
            *(
                run_call(tools, call, agent.tool_timeout_s)
                for call in completion.tool_calls[:allowed]
            )
        )
        for call, (text, record) in zip(completion.tool_calls, ran, strict=False):
            talk.calls.append(record)
            talk.messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        for call in completion.tool_calls[allowed:]:
            _, canonical = canonical_arguments(call.arguments)
            text = LIMIT_MESSAGE.format(limit=agent.max_tool_calls)
            talk.calls.append(make_record(call.name, canonical, "refused", 0.0, text, None))
            talk.messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
        if len(talk.calls) >= agent.max_tool_calls:
            offered = []  # the next answer must be text
