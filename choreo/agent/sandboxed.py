"""The sandbox run on an agent's model's output, before the output is routed.

A tool's result is appended to the output as a short transcript, so the agent's routes can
match on it (``\\[sandbox: ok``) and its writes carry it (``{output}``) to the next agent; the
structured result goes in the step's payload. The output's Python code blocks run in the
sandbox service, never on the host. Tools the model calls itself are in choreo.tools.
"""

from __future__ import annotations

import json
from typing import Any

from choreo.agent import step as steps
from choreo.agent.behaviour import Behaviour
from choreo.observe import metrics
from choreo.schemas import Envelope
from choreo.schemas.codec import clean_text
from choreo.schemas.records import STEP_FAILED
from choreo.spec.mesh import AgentSpec, ToolSpec
from choreo.tools.record import args_sha256
from choreo.tools.sandbox.client import SandboxError, run_code, service_url
from choreo.tools.sandbox.transcript import TRANSCRIPT_CHARS, as_code, code_blocks, transcript


class SandboxTool:
    """Runs the output's code blocks (joined, as one program) in the sandbox service.

    The service is reached at ``CHOREO_SANDBOX_URL`` when set, else at the tool's ``url``,
    else over the Unix socket ``CHOREO_SANDBOX_SOCKET`` (the client's default).
    """

    name = "sandbox"

    def __init__(self, spec: ToolSpec) -> None:
        self.spec = spec
        self.base_url = service_url(spec)

    async def run(self, text: str, event: Envelope) -> tuple[str, dict[str, Any]]:
        code = "\n\n".join(code_blocks(text))
        if not code:
            return self._report("skipped", "no code block in the output", {})
        state = event.state or {}
        files = {name: as_code(state.get(field)) for name, field in self.spec.files.items()}
        try:
            result = await run_code(
                code, files=files, timeout_s=self.spec.timeout_s, base_url=self.base_url
            )
        except SandboxError as exc:
            return self._report("unavailable", clean_text(str(exc)), {})
        # Program output is foreign text: cleaned here, so the step record always encodes.
        reason = None if result.reason is None else clean_text(result.reason)
        # the call's identity, for the watchdog's repeated-tool-call rule (hop record tool_calls)
        canonical = json.dumps(
            {"code": code, "files": files},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        detail = {
            "args_sha256": args_sha256(canonical),
            "exit_code": result.exit_code,
            "duration_ms": result.duration_ms,
            "stdout": clean_text(result.stdout[-TRANSCRIPT_CHARS:]),
            "stderr": clean_text(result.stderr[-TRANSCRIPT_CHARS:]),
            "reason": reason,
        }
        return self._report(result.status, reason, detail)

    def _report(
        self, status: str, reason: str | None, detail: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        metrics.TOOL_RUNS.labels(tool=self.name, status=status).inc()
        text = transcript(
            status,
            reason,
            detail.get("exit_code"),
            detail.get("stdout", ""),
            detail.get("stderr", ""),
        )
        return text, {"tool": self.name, "status": status, "reason": reason, **detail}


class ToolAgent:
    """Wraps an agent's behaviour: its output runs through the tools, then is routed again.

    The wrapped behaviour keeps its model call, retries and accounting; only a successful
    output is re-routed, with the tools' transcripts appended to its text.
    """

    def __init__(self, agent: AgentSpec, inner: Behaviour) -> None:
        self.agent = agent
        self.inner = inner
        self.tools = [
            SandboxTool(spec)
            for spec in agent.tools
            if isinstance(spec, ToolSpec) and not spec.call
        ]
        #: Fields the routing decides; the wrapped step's other writes are kept as they are.
        self._routed = set(agent.writes) | {k for r in agent.routes for k in r.writes}

    async def step(self, event: Envelope) -> list[Envelope]:
        outputs = await self.inner.step(event)
        first = outputs[0]
        text = first.payload.get("text")
        if first.type == STEP_FAILED or not isinstance(text, str):
            return outputs
        transcripts, results = [text], []
        for tool in self.tools:
            transcript, result = await tool.run(text, event)
            transcripts.append(transcript)
            results.append(result)
        routed = steps.outcome(self.agent, event, "\n\n".join(transcripts), first.usage, [])
        if routed.delta is not None:  # keep what the step wrote besides its routes (a summary)
            kept = {k: v for k, v in (first.delta or {}).items() if k not in self._routed}
            routed.delta = {**kept, **routed.delta}
        routed.payload["tools"] = results
        if "reason" in routed.payload:  # why the tools did not run, before the output
            refusals = [
                f"{r['tool']} {r['status']}: {r['reason']}"
                for r in results
                if r.get("reason") and r["status"] != "ok"
            ]
            if refusals:
                routed.payload["reason"] = clean_text(
                    f"{self.agent.name}: {'; '.join(refusals)}; {routed.payload['reason']}"
                )
        for key in ("input_fingerprint", "context", "cut", "tool_calls"):  # the model call's
            if key in first.payload:
                routed.payload[key] = first.payload[key]
        return [routed]

    async def aclose(self) -> None:
        await self.inner.aclose()
