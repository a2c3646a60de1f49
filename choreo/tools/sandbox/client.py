"""What agents call to run code: one HTTP request to the sandbox service.

Each call is an ``execute_tool {tool}`` span in the caller's trace (the agent step's); the
agent's tool counts the run in ``choreo_tool_runs_total``.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import msgspec
from opentelemetry.trace import StatusCode

from choreo.observe import telemetry
from choreo.spec.mesh import ToolSpec
from choreo.tools.errors import SandboxError
from choreo.tools.sandbox.limits import SandboxLimits
from choreo.tools.sandbox.protocol import RunRequest, SandboxResult

# The service needs time around the run itself: starting the sandbox, tearing it down.
OVERHEAD_S = 10.0


def service_url(spec: ToolSpec) -> str | None:
    """Where an agent's sandbox tool reaches the service over HTTP: ``CHOREO_SANDBOX_URL``
    when set, else the spec's ``url``; None means over its Unix socket."""
    return os.environ.get("CHOREO_SANDBOX_URL") or spec.url


async def run_code(
    code: str,
    *,
    language: str = "python",
    timeout_s: float = 5.0,
    stdin: str = "",
    files: dict[str, str] | None = None,
    socket_path: Path | str | None = None,
    base_url: str | None = None,
    tool: str = "sandbox",
) -> SandboxResult:
    """Run ``code`` in the sandbox and return its result.

    The service is reached at ``base_url`` when given, else over the Unix socket
    ``socket_path`` (default: ``CHOREO_SANDBOX_SOCKET``). A refused run (isolation
    unavailable) is a result with ``status="refused"``, not an exception. ``tool`` names
    the span: the name the agent knows the tool by.
    """
    with telemetry.tool_span(tool) as span:
        span.set_attribute("choreo.tool.language", language)
        if telemetry.record_content():
            span.set_attribute("gen_ai.tool.call.arguments", code)
        try:
            result = await _post(code, language, timeout_s, stdin, files, socket_path, base_url)
        except SandboxError as exc:
            span.set_attribute("error.type", "unavailable")
            span.set_status(StatusCode.ERROR, str(exc))
            raise
        span.set_attribute("choreo.tool.status", result.status)
        if result.exit_code is not None:
            span.set_attribute("choreo.tool.exit_code", result.exit_code)
        if telemetry.record_content():
            span.set_attribute("gen_ai.tool.call.result", result.stdout)
        if result.status != "ok":
            span.set_status(StatusCode.ERROR, result.reason or result.status)
        return result


async def _post(
    code: str,
    language: str,
    timeout_s: float,
    stdin: str,
    files: dict[str, str] | None,
    socket_path: Path | str | None,
    base_url: str | None,
) -> SandboxResult:
    if base_url is None:
        path = socket_path or SandboxLimits().socket
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        client = httpx.AsyncClient(transport=transport, base_url="http://sandbox")
    else:
        client = httpx.AsyncClient(base_url=base_url)
    request = RunRequest(
        code=code,
        language=language,  # type: ignore[arg-type]
        stdin=stdin,
        timeout_s=timeout_s,
        files=files or {},
    )
    async with client:
        try:
            response = await client.post(
                "/run",
                content=msgspec.json.encode(request),
                headers={"Content-Type": "application/json"},
                timeout=timeout_s + OVERHEAD_S,
            )
        except httpx.TransportError as exc:
            raise SandboxError(f"sandbox service unreachable: {exc!r}") from exc
    if response.status_code not in (200, 503):
        raise SandboxError(f"sandbox rejected the run ({response.status_code}): {response.text}")
    try:
        return msgspec.json.decode(response.content, type=SandboxResult)
    except msgspec.DecodeError as exc:
        raise SandboxError(f"unexpected reply from the sandbox: {response.text[:200]}") from exc
