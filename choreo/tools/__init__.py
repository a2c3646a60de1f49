"""Tools a model agent's model calls, over the OpenAI function-calling protocol.

Three sources, one shape (``base.Tool``): Python functions by import path (``function``),
the tools of MCP servers (``mcp``), and the sandbox service (``sandbox``). ``loop`` runs a
step's model ↔ tool conversation; ``record`` turns each call into the hop record's entry, its
metric and its span.
"""
