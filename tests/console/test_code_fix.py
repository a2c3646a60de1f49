"""The console in a real browser over the code-fix example: a trace halted (its budget of
steps used up) opens an escalation; resuming it from the page with guidance starts the
continuation, which completes, and each trace has exactly one terminal record."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from choreo.schemas import Budget, TerminalResult
from tests.conftest import EXAMPLES, LocalMesh, wait_until
from tests.console.conftest import HOSTILE, RunningConsole, needs_chromium, untouched

pytestmark = [
    pytest.mark.integration,
    needs_chromium,
    pytest.mark.skipif(
        shutil.which("bwrap") is None,
        reason="bubblewrap is not installed (apt-get install bubblewrap): "
        "the sandbox refuses to run code without isolation",
    ),
]

TASK = (
    "Write slugify(title) in solution.py: lowercase words of letters and digits, "
    "joined by single hyphens, punctuation dropped."
)


@pytest.fixture(scope="module")
def console(
    start_mesh: Callable[..., LocalMesh], console_of: Callable[[LocalMesh], RunningConsole]
) -> Iterator[RunningConsole]:
    with start_mesh(EXAMPLES / "code-fix" / "mesh.yaml") as mesh:
        yield console_of(mesh)


@pytest.fixture(scope="module")
def halted(console: RunningConsole) -> str:
    client = console.mesh.client
    trace_id = client.submit(f"{TASK} {HOSTILE}", budget=Budget(max_hops=2))
    result = client.wait(trace_id, timeout_s=60)
    assert result.status == "halted", result.reason
    return trace_id


def test_the_halted_trace_stands_out_and_its_page_shows_why(
    console: RunningConsole, halted: str, page: Any
) -> None:
    page.goto(console.page_url("/traces"))
    row = page.locator(f"tr.status-halted[data-trace='{halted}']")
    row.wait_for()
    assert "budget" in row.inner_text()
    page.goto(console.page_url(f"/trace/{halted}"))
    terminal = page.get_by_test_id("terminal")
    terminal.wait_for()
    assert "halted" in terminal.inner_text()
    assert "(no output)" in terminal.inner_text() and "null" not in terminal.inner_text()
    tools = page.get_by_test_id("tool-call")
    assert tools.count() >= 1 and "sandbox" in tools.first.inner_text()
    untouched(page)


def test_resuming_the_halted_trace_from_the_page_completes_it_once(
    console: RunningConsole, halted: str, page: Any
) -> None:
    client = console.mesh.client
    page.goto(console.page_url("/escalations"))
    card = page.locator(f".card.open[data-trace='{halted}']")
    card.wait_for()
    untouched(page)
    card.get_by_test_id("guidance").fill(f"Use re.findall to pick the words. {HOSTILE}")
    card.get_by_test_id("resume").click()
    card.get_by_test_id("done").wait_for()

    (escalation,) = [e for e in client.escalations() if e.trace_id == halted]
    assert escalation.status == "resumed"
    continuation = escalation.continuation_trace_id
    assert continuation is not None and continuation in card.get_by_test_id("done").inner_text()
    result = client.wait(continuation, timeout_s=90)
    assert result.status == "completed", result.reason
    assert result.parent_trace_id == halted
    for trace_id in (halted, continuation):
        assert len(client.read(client.topics.results, trace_id, TerminalResult)) == 1

    # the page, live, shows it resumed; resuming again is refused
    resumed = page.locator(f".card.resumed[data-trace='{halted}']")
    resumed.wait_for()
    assert page.locator(f".card.open[data-trace='{halted}']").count() == 0
    assert "<img src=x onerror=" in resumed.inner_text()  # the guidance, shown as text
    untouched(page)
    wait_until(lambda: client.state(continuation).status == "completed", 30, message="snapshot")
