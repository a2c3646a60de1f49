"""The help-centre knowledge base as an MCP server (official SDK), spoken to over stdio.

The support agent starts it as a child process (``command: [python, kb_server.py]`` in
mesh.yaml); ``python kb_server.py --http PORT`` serves it over streamable HTTP instead.
"""

from __future__ import annotations

import sys

from mcp.server.fastmcp import FastMCP

ARTICLES = {
    "KB-101": (
        "damaged item",
        "Damaged on arrival: we refund in full and the customer keeps "
        "or recycles the item; a photo helps but is not required.",
    ),
    "KB-102": (
        "late delivery",
        "Late parcels: after 10 days in transit we open a carrier claim and reship at no cost.",
    ),
    "KB-103": (
        "returns",
        "Returns: 30 days from delivery, item unused, label from the orders page.",
    ),
}

server = FastMCP("support-kb")


@server.tool()
def kb_search(query: str) -> str:
    """Search the help-centre articles; returns the best matching article with its id."""
    words = set(query.lower().split())
    best = max(ARTICLES.items(), key=lambda kv: len(words & set(kv[1][0].split())))
    article_id, (title, body) = best
    return f"{article_id} ({title}): {body}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.settings.port = int(sys.argv[2])
        server.run("streamable-http")
    else:
        server.run("stdio")
