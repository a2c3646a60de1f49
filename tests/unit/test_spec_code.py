"""Mistakes in the user code a spec names are found before anything starts, at their line of
the spec, with a "did you mean" (choreo.spec.code, what ``choreo up`` runs first)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from choreo.errors import SpecError
from choreo.spec.mesh import load_mesh

MESH = """\
name: typos
entry: [a, b, c, d, e]
models: {fast: {base_url: "http://127.0.0.1:1/v1", model: m}}
agents:
  - name: a
    kind: python
    subscribe: [a]
    handler: PREFIX_handlers:triage
  - name: b
    kind: python
    subscribe: [b]
    handler: PREFIX_handler:triage_ticket
  - name: c
    kind: python
    subscribe: [c]
    handler: PREFIX_broken:f
  - name: d
    subscribe: [d]
    persona: p
    model: fast
    routes: [{finish: true, output: input}]
    tools:
      - function: PREFIX_handlers:lookup_order
      - mcp: srv
        command: [no-such-mcp-server-binary]
      - mcp: local
        command: [./servers/kb.py]
  - name: e
    kind: python
    subscribe: [e]
    handler: PREFIX_handlers:triage_ticket
"""


def test_every_bad_handler_tool_and_command_is_named_at_its_line(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    prefix = f"typos{abs(hash(request.node.nodeid)) % 10**8}"  # module names of this test only
    (tmp_path / f"{prefix}_handlers.py").write_text(
        textwrap.dedent(
            """\
            async def triage_ticket(step):
                return step.finish(output="ok")

            def lookup_order(order_id: str) -> str:
                return order_id
            """
        )
    )
    (tmp_path / f"{prefix}_broken.py").write_text("x = 1\nraise RuntimeError('boom at import')\n")
    (tmp_path / "mesh.yaml").write_text(MESH.replace("PREFIX", prefix))
    with pytest.raises(SpecError) as raised:
        load_mesh(tmp_path / "mesh.yaml", code=True)
    lines = str(raised.value).splitlines()[1:]
    mesh = tmp_path / "mesh.yaml"
    assert lines == [
        f"  {mesh}:8: agents[a].handler: {tmp_path / f'{prefix}_handlers.py'} has no 'triage' "
        "(did you mean 'triage_ticket'?)",
        f"  {mesh}:12: agents[b].handler: no module named '{prefix}_handler' "
        f"(did you mean '{prefix}_handlers'?)",
        f"  {mesh}:16: agents[c].handler: importing '{prefix}_broken' failed: RuntimeError: "
        f"boom at import ({tmp_path / f'{prefix}_broken.py'}:2)",
        f"  {mesh}:25: agents[d].tools[#2].command[#1]: command 'no-such-mcp-server-binary' "
        "not found on PATH",
        f"  {mesh}:27: agents[d].tools[#3].command[#1]: no such command: "
        f"{tmp_path / 'servers' / 'kb.py'}",
    ]
    assert load_mesh(tmp_path / "mesh.yaml").name == "typos"  # names alone: no import
