"""An MCP server (official SDK) that can go away mid-call, for the reconnection tests: over
stdio by default, over streamable HTTP with ``--http PORT``."""

import asyncio
import os
import sys
from pathlib import Path

from mcp.server.fastmcp import FastMCP

server = FastMCP("flaky")


@server.tool()
def pid() -> int:
    """The server's process id: which process answered."""
    return os.getpid()


@server.tool()
def die() -> str:
    """Exits the server in the middle of the call."""
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answers; touches the file ``FLAKY_MARKER`` names once the call has arrived."""
    await asyncio.to_thread(Path(os.environ["FLAKY_MARKER"]).touch)
    await asyncio.sleep(3600)
    return "late"


if __name__ == "__main__":
    over_http = sys.argv[1:2] == ["--http"]
    if over_http:
        server.settings.port = int(sys.argv[2])
    server.run("streamable-http" if over_http else "stdio")
