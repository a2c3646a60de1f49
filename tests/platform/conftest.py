"""Meshes with Python agents and tool-calling model agents, and the MCP servers they reach.

The meshes run in this process (choreo.testing); MCP servers are real processes, over stdio
(started by the agent) or over HTTP (started here).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import wait_until

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def serve_mcp_over_http(
    script: Path, port: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """An MCP server script (``--http PORT``) as its own process, once it listens; its
    output is appended to ``log``."""
    with log.open("ab") as out:
        server = subprocess.Popen(
            [sys.executable, str(script), "--http", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    # generous: on a loaded machine importing the server's web stack takes a while
    wait_until(
        lambda: listening(port) or server.poll() is not None,
        240,
        message=f"the MCP server {script.name} over HTTP",
    )
    assert server.poll() is None, log.read_text()
    return server
