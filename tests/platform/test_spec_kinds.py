"""The mesh spec's python agents and tool entries: wrong combinations fail at load time,
naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from choreo.spec.mesh import FunctionToolSpec, McpServerSpec, SpecError, ToolSpec, parse_mesh


def _mesh(*agents: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "m",
        "entry": ["a"],
        "models": {"t": {"model": "x", "base_url": "http://h"}},
        "agents": list(agents),
    }


PYTHON = {"name": "p", "kind": "python", "handler": "pkg.mod:fn", "subscribe": ["a"], "emit": ["b"]}
MODEL = {
    "name": "w",
    "subscribe": ["b"],
    "persona": "p",
    "model": "t",
    "routes": [{"finish": True}],
}


def test_a_python_agent_needs_no_persona_model_or_routes_and_its_emits_count() -> None:
    spec = parse_mesh(_mesh(PYTHON, MODEL), base_dir=Path("/srv/mesh"))
    agent = spec.agent("p")
    assert agent.emits == {"b"}
    assert spec.python_path == [Path("/srv/mesh")]


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ({**MODEL, "handler": "pkg:fn"}, "handler: a python agent needs a handler"),
        ({**PYTHON, "handler": None}, "handler: a python agent needs a handler"),
        ({**PYTHON, "handler": "no-colon"}, "String should match pattern"),
        ({**MODEL, "emit": ["b"]}, "emit: only a python agent"),
        ({**MODEL, "persona": ""}, "persona, model: an agent that asks a model needs both"),
        ({**PYTHON, "tools": [{"function": "a:b"}]}, "tools: only a model agent runs tools"),
    ],
)
def test_wrong_combinations_are_refused(agent: dict[str, Any], message: str) -> None:
    others = [MODEL] if agent["name"] == "p" else [PYTHON]
    with pytest.raises(SpecError, match=message):
        parse_mesh(_mesh(agent, *others))


def test_tool_entries_of_each_kind() -> None:
    tools = [
        {"name": "sandbox"},
        {"name": "sandbox", "call": True},
        {"function": "tools:add", "timeout_s": 2},
        {"mcp": "kb", "command": ["python", "kb.py"]},
        {"mcp": "web", "url": "http://h:1/mcp", "tools": ["search"]},
    ]
    spec = parse_mesh(_mesh(PYTHON, {**MODEL, "tools": tools}))
    parsed = spec.agent("w").tools
    assert [type(t) for t in parsed] == [
        ToolSpec,
        ToolSpec,
        FunctionToolSpec,
        McpServerSpec,
        McpServerSpec,
    ]
    assert len(spec.agent("w").called_tools) == 4  # all but the sandbox on the output


@pytest.mark.parametrize(
    "server", [{"mcp": "kb"}, {"mcp": "kb", "command": ["x"], "url": "http://h/mcp"}]
)
def test_an_mcp_server_has_exactly_one_transport(server: dict[str, Any]) -> None:
    with pytest.raises(SpecError, match="exactly one of command"):
        parse_mesh(_mesh(PYTHON, {**MODEL, "tools": [server]}))
