"""User code that raises anything Python allows (``KeyboardInterrupt``, ``SystemExit``, a
``CancelledError`` nothing on the mesh's side asked for, a library's own ``BaseException``),
returns anything, hangs or hands back text that does not encode ends its step, never the
service; and the tools an MCP server lists reach the model in a shape the providers accept.

One mesh in this process (choreo.testing), with content tracing on, so tool results are kept
in hop records; what only processes show (a step that ends the process, SIGTERM while a tool
thread hangs) is in tests/processes/test_user_code_processes.py.
"""

from __future__ import annotations

import builtins
import io
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from choreo.cli import views
from choreo.kafka.broker import BrokerHandle, broker_kind
from choreo.observe import telemetry
from choreo.schemas import TerminalResult
from tests.conftest import RunningMesh, wait_until
from tests.platform import user_code
from tests.platform.conftest import HERE

pytestmark = pytest.mark.integration


def user_code_mesh() -> dict[str, Any]:
    return {
        "name": "user-code",
        "entry": ["job"],
        "python_path": [str(HERE)],
        "state": {"seen": {"reducer": "replace"}, "answer": {"reducer": "replace"}},
        "models": {
            "scripted": {
                "model": "user-code",
                "script": str(HERE / "user_code_model.yaml"),
                "price_in_per_mtok": 1.0,
                "price_out_per_mtok": 1.0,
                "max_tools": 16,
            }
        },
        "budgets": {"max_hops": 4, "max_seconds": 120},
        "agents": [
            {
                "name": "misbehave",
                "kind": "python",
                "handler": "user_code:misbehave",
                "subscribe": ["job"],
                "emit": ["tools.asked", "fuzz", "chaos", "code.asked", "unreachable.asked"],
                "timeout_s": 5,
            },
            {
                "name": "toolbot",
                "subscribe": ["tools.asked"],
                "model": "scripted",
                "persona": "You are the tool tester.",
                "reads": ["input"],
                "tools": [
                    {"function": "user_code:interrupt"},
                    {"function": "user_code:cancelled"},
                    {"function": "user_code:listing"},
                    {"function": "user_code:stuck", "timeout_s": 1},
                    {"function": "user_code:stuck_in_c", "timeout_s": 6, "isolation": "process"},
                    {"function": "user_code:crash_in_c", "isolation": "process"},
                    {"mcp": "many", "command": ["python", str(HERE / "many_mcp.py")]},
                ],
                "writes": {"answer": "{output}"},
                "routes": [{"when": "^DONE", "finish": True, "output": "answer"}, {"fail": True}],
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
                        "command": ["python", "-c", "raise SystemExit('no database at db.sqlite')"],
                        "timeout_s": 10,
                    }
                ],
            },
            {
                "name": "coder",
                "subscribe": ["code.asked"],
                "model": "scripted",
                "persona": "You are the coder.",
                "tools": [{"name": "sandbox"}],
                "routes": [
                    {"when": "exit code: 0", "finish": True, "output": "input"},
                    {"fail": True},
                ],
            },
            {
                "name": "fuzzed",
                "kind": "python",
                "handler": "user_code:fuzzed",
                "subscribe": ["fuzz"],
            },
            {
                "name": "chaosbot",
                "subscribe": ["chaos"],
                "model": "scripted",
                "persona": "You are the chaos tester.",
                "tools": [
                    {"function": "user_code:chaos"},
                    {"function": "user_code:chaos_async"},
                ],
                "tool_timeout_s": 1,
                "tool_threads": 2,
                "max_tool_calls": 2,
                "writes": {"answer": "{output}"},
                "routes": [{"when": "^DONE", "finish": True, "output": "answer"}, {"fail": True}],
            },
        ],
    }


@pytest.fixture(scope="module", autouse=True)
def embedded_only(broker: BrokerHandle) -> None:
    if broker_kind(broker.bootstrap) == "kafka":
        pytest.skip(
            "the step boundary is the agent's own, the same on either broker: run on the "
            "embedded one; on Apache Kafka, tests/processes/test_user_code_processes.py covers "
            "the transactional path of a dead-lettered record"
        )


@pytest.fixture(scope="module")
def mesh(
    start_mesh: Callable[..., RunningMesh],
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_module: pytest.MonkeyPatch,
) -> Iterator[RunningMesh]:
    pids = tmp_path_factory.mktemp("pids")
    monkeypatch_module.setenv("USER_CODE_PIDS", str(pids))
    monkeypatch_module.setenv(telemetry.CONTENT_ENV, "true")
    # the sandbox service runs, but cannot isolate: it refuses every run, saying why
    monkeypatch_module.setenv("CHOREO_SANDBOX_BWRAP", str(pids / "no-bwrap"))
    telemetry.configure("user-code-tests")  # tool results kept in hop records
    try:
        with start_mesh(user_code_mesh(), base_dir=tmp_path_factory.mktemp("user-code")) as m:
            yield m
    finally:
        monkeypatch_module.delenv(telemetry.CONTENT_ENV)
        telemetry.configure("user-code-tests")


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def ended_once(mesh: RunningMesh, trace_id: str) -> TerminalResult:
    """The trace's one terminal record (and there is only one)."""
    result = mesh.result(trace_id)
    assert len(mesh.results(trace_id)) == 1
    return result


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def usage_adds_up(mesh: RunningMesh, trace_id: str, result: TerminalResult) -> None:
    hops = mesh.hops(trace_id)
    assert result.usage.tokens_in == sum(h.usage.tokens_in for h in hops)
    assert result.usage.tokens_out == sum(h.usage.tokens_out for h in hops)


@pytest.mark.parametrize(
    ("task", "reason"),
    [
        ("interrupt", "KeyboardInterrupt: pressed in the handler"),
        ("library", "LibraryCancelled: scope cancelled"),
        ("cancel", "CancelledError: inner scope"),
        ("inner", "CancelledError"),
        ("exit", "SystemExit: 4"),
        ("generator", "GeneratorExit"),
        ("undeclared", "writes state fields the spec does not declare: ['sen']"),
    ],
)
def test_a_handler_raising_any_exception_class_fails_its_step_not_the_agent(
    mesh: RunningMesh, task: str, reason: str
) -> None:
    trace_id = mesh.submit(task)
    result = ended_once(mesh, trace_id)
    assert result.status == "failed"
    assert result.reason is not None and result.reason.startswith("misbehave: "), result.reason
    assert reason in result.reason
    assert [h.status for h in mesh.hops(trace_id)] == ["failed"]
    assert mesh.failed() == []


def test_text_that_does_not_encode_is_cleaned_in_state(mesh: RunningMesh) -> None:
    trace_id = mesh.submit("surrogate")
    result = ended_once(mesh, trace_id)
    assert result.status == "completed", result.reason
    assert result.output == "report-\ufffd.txt"


def test_the_sandbox_refusal_comes_first_in_the_reason(mesh: RunningMesh) -> None:
    trace_id = mesh.submit("code")
    result = ended_once(mesh, trace_id)
    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.startswith(
        "coder: sandbox refused: isolation unavailable: bubblewrap not found"
    ), result.reason


def test_an_mcp_server_that_cannot_start_is_reported_with_its_own_error(
    mesh: RunningMesh,
) -> None:
    trace_id = mesh.submit("unreachable")
    result = ended_once(mesh, trace_id)
    assert result.status == "failed"
    assert result.reason is not None
    assert result.reason.startswith("stranded: tools unavailable: mcp:gone: "), result.reason
    assert "its stderr ends: no database at db.sqlite" in result.reason
    assert "ExceptionGroup" not in result.reason


def test_tools_raising_anything_are_errors_for_the_model_and_every_call_is_billed(
    mesh: RunningMesh, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="choreo.tools")
    trace_id = mesh.submit("tools")
    result = ended_once(mesh, trace_id)
    assert result.status == "completed", result.reason
    assert result.output == "DONE: every tool answered"
    calls = {c.name: c for c in mesh.hops(trace_id)[1].tool_calls}
    assert {name: c.status for name, c in calls.items()} == {
        "interrupt": "error",
        "cancelled": "error",
        "listing": "ok",
        "stuck": "timeout",
        "bad_name_with_spaces": "ok",
        "stuck_in_c": "timeout",
        "crash_in_c": "error",
    }
    # the hop record keeps the result the model got: cleaned, so it encodes
    assert calls["listing"].result == "found: report-\ufffd.txt"
    assert calls["interrupt"].result == "ERROR: KeyboardInterrupt: pressed in a tool"
    assert calls["crash_in_c"].result == "ERROR: crash_in_c: its process killed by SIGSEGV"
    # the tool stuck in C ran in a process of its own, killed at its timeout
    (pid,) = [int(p.name) for p in Path(os.environ["USER_CODE_PIDS"]).iterdir()]
    wait_until(lambda: not alive(pid), 10, message=f"the stuck tool's process {pid} gone")
    raised = {r.tool: r for r in caplog.records if r.getMessage() == "tool raised"}  # type: ignore[attr-defined]
    assert raised["interrupt"].levelno == logging.WARNING
    assert raised["interrupt"].exc_info is not None  # with its traceback
    assert result.usage.tokens_in > 0  # two model calls, both counted
    usage_adds_up(mesh, trace_id, result)
    assert mesh.failed() == []


def test_mcp_tools_are_renamed_to_the_providers_rule_and_capped_per_tier(
    mesh: RunningMesh,
) -> None:
    trace_id = mesh.submit("tools again")
    assert ended_once(mesh, trace_id).status == "completed"
    hops = mesh.hops(trace_id)
    notes = [
        "tool 'bad name/with spaces' of mcp:many offered as 'bad_name_with_spaces'",
        "495 of 511 tools not offered: tier 'scripted' offers at most 16 (its max_tools)",
    ]
    assert hops[1].extensions["notes"] == notes
    shown = io.StringIO()  # as `choreo trace` prints them, under the step
    Console(file=shown, markup=False, width=400).print(
        views.trace_tree(trace_id, hops, mesh.result(trace_id))
    )
    assert [
        line.split("note ", 1)[1] for line in shown.getvalue().splitlines() if "note " in line
    ] == notes


# -- fuzz ------------------------------------------------------------------------------------


def _base_exceptions(cls: type[BaseException] = BaseException) -> Iterator[type[BaseException]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _base_exceptions(sub)


#: Every builtin exception class, whatever it derives from.
BUILTIN_EXCEPTIONS = sorted(
    {c for c in _base_exceptions() if getattr(builtins, c.__name__, None) is c},
    key=lambda c: c.__name__,
)


def _raised(base: type[BaseException], name: str, message: str) -> BaseException:
    """An exception of ``base``, or of a new subclass of it named ``name``: made with
    ``message``, or as an exception group of one, or bare (``__new__``) for the classes that
    want more arguments (``UnicodeDecodeError``)."""
    cls = type(name, (base,), {}) if name else base
    for arguments in ((message,), (message, [ValueError(message)])):
        try:
            return cls(*arguments)
        except TypeError:
            continue
    return cls.__new__(cls)


texts = st.lists(
    st.one_of(st.characters(), st.sampled_from(["\udce9", "\ud83d", "\x00", "[bold]"])),
    max_size=30,
).map("".join)
exceptions = st.builds(
    _raised,
    st.sampled_from(BUILTIN_EXCEPTIONS),
    st.sampled_from(["", "LibraryTimeout"]),
    texts,
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts, st.binary()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
) | st.builds(object)
plans = st.one_of(
    st.tuples(st.just("raise"), exceptions),
    st.tuples(st.just("hang"), st.none()),
    st.tuples(st.sampled_from(["return", "finish"]), values),
)


# the mesh's own threads use ``random`` (ids, back-off) while hypothesis draws: not the test's
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(handler=plans, tool=plans)
def test_no_user_code_takes_a_service_down_and_every_task_ends_once(
    mesh: RunningMesh, handler: tuple[str, object], tool: tuple[str, object]
) -> None:
    key = f"fuzz-{len(user_code.PLANS)}"
    user_code.PLANS[key] = handler
    user_code.PLANS[user_code.TOOL] = tool
    by_handler = mesh.submit(key)
    by_tool = mesh.submit(f"chaos-{len(user_code.PLANS)}")
    for trace_id in (by_handler, by_tool):
        result = ended_once(mesh, trace_id)
        usage_adds_up(mesh, trace_id, result)
    assert ended_once(mesh, by_tool).status == "completed"
    assert mesh.failed() == []
