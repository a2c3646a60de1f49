"""The console in a real browser over the research example: the fan-out to three
researchers is drawn as three branches of one event, the join where they meet, then the
synthesizer's step and the terminal record; the state page shows the concurrent writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import EXAMPLES, LocalMesh
from tests.console.conftest import RunningConsole, needs_chromium

pytestmark = [pytest.mark.integration, needs_chromium]


@pytest.fixture(scope="module")
def console(
    start_mesh: Callable[..., LocalMesh], console_of: Callable[[LocalMesh], RunningConsole]
) -> Iterator[RunningConsole]:
    with start_mesh(EXAMPLES / "research" / "mesh.yaml") as mesh:
        yield console_of(mesh)


@pytest.fixture(scope="module")
def finished(console: RunningConsole) -> str:
    client = console.mesh.client
    trace_id = client.submit("Should we move our batch jobs to event streams?")
    assert client.wait(trace_id, timeout_s=60).status == "completed"
    return trace_id


def test_the_trace_page_draws_the_fan_out_and_the_join(
    console: RunningConsole, finished: str, page: Any
) -> None:
    page.goto(console.page_url(f"/trace/{finished}"))
    page.get_by_test_id("terminal").wait_for()
    branches = page.locator(".step.branch")
    assert branches.count() == 3
    agents = {branches.nth(i).locator(".c").nth(1).inner_text().split()[0] for i in range(3)}
    assert agents == {"historian", "engineer", "economist"}
    assert "fan-out branch" in branches.nth(0).inner_text()
    join = page.get_by_test_id("join")
    assert join.count() == 1 and "join research: 3 arrived" in join.inner_text()
    last = page.get_by_test_id("step").last
    assert last.locator(".c").nth(1).inner_text() == "synthesizer"
    assert "completed" in page.get_by_test_id("terminal").inner_text()


def test_the_state_page_shows_what_each_researcher_wrote(
    console: RunningConsole, finished: str, page: Any
) -> None:
    page.goto(console.page_url(f"/trace/{finished}/state"))
    page.get_by_test_id("fields").wait_for()
    findings = page.locator("tr[data-field='findings'] pre").inner_text()
    for agent in ("historian", "engineer", "economist"):
        assert agent in findings
    assert page.locator("tr[data-field='sources'] pre").inner_text() == "3"
    # every version can be picked
    options = page.get_by_test_id("at").locator("option")
    assert options.count() == len(console.mesh.client.history(finished, console.mesh.spec))


def test_the_traces_page_filters_by_agent(
    console: RunningConsole, finished: str, page: Any
) -> None:
    page.goto(console.page_url("/traces?agent=economist"))
    page.locator(f"tr[data-trace='{finished}']").wait_for()
    page.goto(console.page_url("/traces?agent=nobody"))
    expect(page.get_by_test_id("shown")).to_have_text("none of 0")
