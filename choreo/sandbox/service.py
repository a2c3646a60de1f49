"""The sandbox service: checks isolation, bounds concurrency, validates runs, counts them.

Isolation is checked by running a probe through the full sandbox at start-up, on every
health check, and again before a run whenever the last check failed. Without it every run
is refused; there is no unconfined fallback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from choreo.observe.metrics import TOOL_RUNS
from choreo.sandbox.isolation import SANDBOX_UID, IsolationUnavailable, Toolchain, locate
from choreo.sandbox.runner import execute
from choreo.tools.sandbox.limits import MIB, SandboxLimits
from choreo.tools.sandbox.protocol import RunRequest, SandboxResult, check_file_name

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0
# Fails unless the layers hold: the unprivileged uid, the socket filter, the read-only root.
PROBE = f"""
import os, socket
assert os.getuid() == {SANDBOX_UID}, "not the sandbox uid"
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raise SystemExit("network sockets are not refused")
except PermissionError:
    pass
try:
    open("/probe", "w")
    raise SystemExit("the root is writable")
except OSError:
    pass
print("isolated")
"""


class SandboxService:
    """One per process; every public method is safe to call concurrently."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self._tools: Toolchain | None = None
        self._problem: str | None = "isolation not checked yet"
        self._slots = asyncio.Semaphore(limits.max_concurrent)

    @property
    def problem(self) -> str | None:
        """Why runs are refused, or None when isolation worked at the last check."""
        return self._problem

    async def check(self) -> str | None:
        """Locate the tools and run the probe in a full sandbox; return the problem if any."""
        try:
            tools = locate(self.limits)
        except IsolationUnavailable as exc:
            return self._set(None, str(exc))
        result = await execute(tools, self.limits, RunRequest(code=PROBE), PROBE_TIMEOUT_S)
        if result.status == "ok" and result.stdout.strip() == "isolated":
            return self._set(tools, None)
        detail = result.reason or result.stderr.strip()[-500:] or result.status
        return self._set(None, f"isolation probe failed: {detail}")

    async def health(self) -> dict[str, Any]:
        problem = await self.check()
        tools = self._tools
        return {
            "isolation": problem is None,
            "problem": problem,
            "bwrap": tools.bwrap if tools else None,
            "python": str(tools.python) if tools else None,
            "limits": self.limits.model_dump(mode="json"),
        }

    def validate(self, request: RunRequest) -> str | None:
        """Why the request is malformed (a client error, not a run), or None."""
        if request.timeout_s is not None and request.timeout_s > self.limits.max_timeout_s:
            return f"timeout_s may be at most {self.limits.max_timeout_s:g}"
        if len(request.files) > self.limits.max_files:
            return f"at most {self.limits.max_files} files"
        for name, body in request.files.items():
            if problem := check_file_name(name):
                return problem
            if len(body.encode()) > self.limits.file_size_mb * MIB:
                return f"file {name!r} exceeds the file size limit"
        return None

    async def run(self, request: RunRequest) -> SandboxResult:
        """Run a validated request, or refuse it when isolation is unavailable or setting up
        the run fails (the reason says why); never raises."""
        timeout_s = request.timeout_s or self.limits.default_timeout_s
        async with self._slots:
            try:
                result = await self._run_isolated(request, timeout_s)
            except Exception as exc:  # one request's failure is its answer, never the server's
                log.exception("sandbox run failed")
                result = SandboxResult(
                    status="refused", reason=f"sandbox error: {type(exc).__name__}: {exc}"
                )
        TOOL_RUNS.labels(tool="sandbox", status=result.status).inc()
        log.info(
            "sandbox run",
            extra={
                "status": result.status,
                "exit_code": result.exit_code,
                "duration_ms": result.duration_ms,
            },
        )
        return result

    async def _run_isolated(self, request: RunRequest, timeout_s: float) -> SandboxResult:
        if self._tools is None:
            await self.check()
        tools = self._tools
        if tools is None or (missing := tools.missing()) is not None:
            problem = self._problem if tools is None else self._set(None, missing)
            return SandboxResult(status="refused", reason=f"isolation unavailable: {problem}")
        result = await execute(tools, self.limits, request, timeout_s)
        if result.status == "refused":
            self._set(None, result.reason)  # re-probed before the next run
        return result

    def _set(self, tools: Toolchain | None, problem: str | None) -> str | None:
        if problem and problem != self._problem:
            log.warning("sandbox isolation unavailable", extra={"problem": problem})
        self._tools, self._problem = tools, problem
        return problem
