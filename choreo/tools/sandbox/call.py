"""The sandbox as a function the model calls: ``sandbox(code)`` runs Python in the sandbox
service (never on the host) and answers with the run's transcript."""

from __future__ import annotations

from typing import Any

from choreo.spec.mesh import ToolSpec
from choreo.tools.base import ToolFailure
from choreo.tools.sandbox.client import OVERHEAD_S, SandboxError, run_code, service_url
from choreo.tools.sandbox.transcript import as_code, transcript

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "A complete Python program; print what you need."}
    },
    "required": ["code"],
    "additionalProperties": False,
}


class SandboxCallTool:
    """``sandbox(code)``; the spec's ``files`` (state fields) are put next to the code."""

    name = "sandbox"
    description = (
        "Run a Python program in an isolated sandbox (no network, limited time "
        "and memory) and get its exit status, stdout and stderr."
    )
    parameters = PARAMETERS
    server: str | None = None

    def __init__(self, spec: ToolSpec, state: dict[str, Any]) -> None:
        self.spec = spec
        self.files = {name: as_code(state.get(field)) for name, field in spec.files.items()}
        self.timeout_s: float | None = spec.timeout_s + OVERHEAD_S
        self.base_url = service_url(spec)

    async def call(self, arguments: dict[str, Any]) -> str:
        code = arguments.get("code")
        if not isinstance(code, str) or not code.strip():
            raise ToolFailure("invalid", "sandbox needs 'code': a non-empty Python program")
        try:
            result = await run_code(
                code, files=self.files, timeout_s=self.spec.timeout_s, base_url=self.base_url
            )
        except SandboxError as exc:
            raise ToolFailure("error", f"sandbox unavailable: {exc}") from None
        return transcript(
            result.status, result.reason, result.exit_code, result.stdout, result.stderr
        )
