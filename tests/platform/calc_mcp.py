"""A small MCP server (official SDK) spoken to over stdio by the platform tests."""

from mcp.server.fastmcp import FastMCP

server = FastMCP("calc")


@server.tool()
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


if __name__ == "__main__":
    server.run("stdio")
