"""The tools layer's errors, apart from the tool runners so they can be caught without
loading the MCP SDK, the HTTP client or tracing. ``ToolError``, which a tool raises to answer
the model, is the SDK's (``choreo.schemas.errors``)."""

from __future__ import annotations

from choreo.schemas.errors import ChoreoError


class ToolSetupError(ChoreoError, RuntimeError):
    """The agent's tools cannot be offered (two with one name, a server unreachable)."""


class McpUnavailable(ToolSetupError):
    """An MCP server could not be started, reached or listed; the message says which."""


class SandboxError(ChoreoError, RuntimeError):
    """The sandbox service could not be reached or rejected the request; nothing ran."""
