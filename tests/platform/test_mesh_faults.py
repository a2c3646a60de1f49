"""A Python agent and a tool-calling model agent in one mesh on the real broker: state folded,
budgets enforced, one terminal record per task, MCP over stdio and HTTP, and every way user
code can go wrong ending as a step failure or a tool error, never a service exit. (Every kind
of tool call, seen in the spans, metrics and ``choreo trace`` of processes:
tests/processes/test_tool_calls_observed.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import EXAMPLES, RunningMesh
from tests.platform.conftest import HERE, free_port, serve_mcp_over_http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kb_over_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example's knowledge-base MCP server, as its own process on streamable HTTP."""
    port = free_port()
    server = serve_mcp_over_http(
        EXAMPLES / "support-desk" / "kb_server.py",
        port,
        tmp_path_factory.mktemp("kb-http") / "kb.log",
    )
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.terminate()
        server.wait(timeout=30)


def faults_mesh(kb_url: str) -> dict[str, Any]:
    return {
        "name": "platform-faults",
        "entry": ["job"],
        "python_path": [str(HERE)],
        "state": {"seen": {"reducer": "replace"}, "answer": {"reducer": "replace"}},
        "models": {
            "scripted": {
                "model": "platform",
                "script": str(HERE / "model.yaml"),
                "price_in_per_mtok": 1.0,
                "price_out_per_mtok": 1.0,
            }
        },
        "budgets": {"max_hops": 6, "max_seconds": 120},
        "agents": [
            {
                "name": "dispatch",
                "kind": "python",
                "handler": "handlers:dispatch",
                "subscribe": ["job"],
                "emit": ["tools.asked", "spend.asked", "unreachable.asked"],
                "timeout_s": 2,
            },
            {
                "name": "spender",
                "kind": "python",
                "handler": "handlers:spender",
                "subscribe": ["spend.asked"],
                "model": "scripted",
            },
            {
                "name": "stranded",
                "subscribe": ["unreachable.asked"],
                "model": "scripted",
                "persona": "You are the tool tester.",
                "routes": [{"fail": True}],
                "tools": [
                    {
                        "mcp": "gone",
                        "command": ["python", "-c", "raise SystemExit(3)"],
                        "timeout_s": 5,
                    }
                ],
            },
            {
                "name": "toolbot",
                "subscribe": ["tools.asked"],
                "model": "scripted",
                "persona": "You are the tool tester.",
                "reads": ["input"],
                "tools": [
                    {"function": "platform_tools:add"},
                    {"function": "platform_tools:boom"},
                    {"function": "platform_tools:slow", "timeout_s": 1},
                    {"mcp": "calc", "command": ["python", str(HERE / "calc_mcp.py")]},
                    {"mcp": "kb", "url": kb_url},
                ],
                "max_tool_calls": 8,
                "writes": {"answer": "{output}"},
                "routes": [{"when": "^DONE", "finish": True, "output": "answer"}, {"fail": True}],
            },
        ],
    }


@pytest.fixture(scope="module")
def mesh(
    start_mesh: Callable[..., RunningMesh],
    kb_over_http: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningMesh]:
    with start_mesh(
        faults_mesh(kb_over_http), base_dir=tmp_path_factory.mktemp("faults")
    ) as running:
        yield running


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ("raise", "dispatch: LookupError: no order 7 on file"),
        ("hang", "dispatch: handler did not return within 2s"),
        ("wrong", "dispatch: handler returned dict, not a choreo.Result"),
        (
            "elsewhere",
            "dispatch: emitted 'elsewhere', not in its emit list ['tools.asked', "
            "'spend.asked', 'unreachable.asked']",
        ),
        ("unjson", "dispatch: writes or output are not JSON"),
    ],
)
def test_broken_user_code_fails_the_step_not_the_service(
    mesh: RunningMesh, task: str, reason: str
) -> None:
    trace_id = mesh.submit(task)
    result = mesh.result(trace_id)
    assert result.status == "failed"
    assert result.reason is not None and result.reason.startswith(reason), result.reason
    assert [h.status for h in mesh.hops(trace_id)] == ["failed"]
    assert mesh.failed() == []


def test_an_mcp_server_that_cannot_start_fails_the_step_not_the_service(mesh: RunningMesh) -> None:
    trace_id = mesh.submit("unreachable")
    result = mesh.result(trace_id)
    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.startswith("stranded: tools unavailable: mcp:gone:"), result.reason
    assert mesh.failed() == []


def test_a_python_agent_is_stopped_by_the_token_budget(mesh: RunningMesh) -> None:
    trace_id = mesh.submit("spend", budget={"max_tokens": 60})
    result = mesh.result(trace_id)
    assert result.status == "halted"
    assert result.reason is not None and result.reason.startswith("spender: ")
    assert "model call not made" in result.reason  # refused before the call, not after
    spent = result.usage.tokens_in + result.usage.tokens_out
    assert 0 < spent <= 60  # never past the budget: each call is capped by what is left


def test_a_model_repeating_a_tool_call_is_cut_at_max_tool_calls(mesh: RunningMesh) -> None:
    trace_id = mesh.submit("LOOP")
    result = mesh.result(trace_id)
    assert result.status == "completed", result.reason
    assert result.output == "DONE: gave up looping"
    calls = mesh.hops(trace_id)[1].tool_calls
    assert [c.status for c in calls] == ["ok"] * 8 + ["refused"]
    assert len({(c.name, c.args_sha256) for c in calls}) == 1


def test_services_keep_serving_after_every_failure(mesh: RunningMesh) -> None:
    trace_id = mesh.submit("go again")
    assert mesh.result(trace_id).status == "completed"
    assert mesh.failed() == []
