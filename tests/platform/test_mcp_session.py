"""Which failed MCP calls mean the session is lost (the next call reconnects) and which
leave it be."""

from __future__ import annotations

import anyio
import httpx
import pytest
from mcp import McpError, types

from choreo.tools.mcp import session_gone


def error(code: int) -> McpError:
    return McpError(types.ErrorData(code=code, message="x"))


@pytest.mark.parametrize(
    ("exc", "gone"),
    [
        (error(types.CONNECTION_CLOSED), True),  # the connection closed under the call
        (error(32600), True),  # an HTTP server that restarted no longer knows the session
        (httpx.ConnectError("refused"), True),
        (anyio.BrokenResourceError(), True),
        (error(types.INVALID_PARAMS), False),  # the server answered: it is there
        (error(httpx.codes.REQUEST_TIMEOUT), False),  # slow, not gone
        (TimeoutError(), False),
    ],
)
def test_a_session_is_lost_unless_the_server_answered_or_was_only_slow(
    exc: BaseException, gone: bool
) -> None:
    assert session_gone(exc) is gone
