"""An MCP server (official SDK, low level) listing more tools than a provider accepts, the
first under a name no provider accepts; every tool answers with its own name."""

import anyio
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

#: How many tools the server lists (OpenAI and Anthropic accept at most 128).
COUNT = 505
NAMES = ["bad name/with spaces", *(f"tool_{n}" for n in range(1, COUNT))]

server: Server = Server("many")


@server.list_tools()
async def list_tools() -> list[types.Tool]:
    return [
        types.Tool(name=name, description=f"Answers {name}.", inputSchema={"type": "object"})
        for name in NAMES
    ]


@server.call_tool()
async def call_tool(name: str, arguments: dict[str, object]) -> list[types.TextContent]:
    return [types.TextContent(type="text", text=f"called {name}")]


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
