"""The console in a real browser over the writer-editor example: each page renders a real
trace, untrusted text stays text on every page, a dead letter requeued from the page gets
processed, and a request without the token is refused."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from choreo.schemas import TerminalResult
from tests.conftest import EXAMPLES, LocalMesh, wait_until
from tests.console.conftest import HOSTILE, RunningConsole, needs_chromium, untouched

pytestmark = [pytest.mark.integration, needs_chromium]


@pytest.fixture(scope="module")
def console(
    start_mesh: Callable[..., LocalMesh], console_of: Callable[[LocalMesh], RunningConsole]
) -> Iterator[RunningConsole]:
    with start_mesh(EXAMPLES / "writer-editor" / "mesh.yaml") as mesh:
        yield console_of(mesh)


@pytest.fixture(scope="module")
def finished(console: RunningConsole) -> str:
    """A trace of the writer-editor that completed, its task input hostile text."""
    client = console.mesh.client
    trace_id = client.submit(f"Write about event sourcing. {HOSTILE}")
    assert client.wait(trace_id, timeout_s=60).status == "completed"
    return trace_id


def _send_raw(console: RunningConsole, key: str, value: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=console.mesh.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(console.mesh.client.topics.tasks, value, key=key.encode())
        finally:
            await producer.stop()

    console.mesh.run(send())


def test_the_traces_page_lists_the_trace_with_its_status_steps_and_cost(
    console: RunningConsole, finished: str, page: Any
) -> None:
    page.goto(console.page_url("/traces"))
    row = page.locator(f"tr[data-trace='{finished}']")
    row.wait_for()
    assert row.locator(".status").inner_text() == "completed"
    assert row.locator("td").nth(3).inner_text() == "6"  # steps, as the mesh counted them
    page.get_by_test_id("filter-status").select_option("failed")
    page.locator(f"tr[data-trace='{finished}']").wait_for(state="detached")
    untouched(page)


def test_the_trace_page_draws_every_step_with_its_latency_and_the_terminal_record(
    console: RunningConsole, finished: str, page: Any
) -> None:
    page.goto(console.page_url(f"/trace/{finished}"))
    page.get_by_test_id("terminal").wait_for()
    hops = console.mesh.client.hops(finished)
    steps = page.get_by_test_id("step")
    assert steps.count() == len(hops) == 6
    assert steps.nth(0).locator(".c").nth(1).inner_text().startswith("writer")
    assert "completed" in page.get_by_test_id("terminal").inner_text()
    untouched(page)


def test_the_state_page_shows_each_field_with_its_writer_and_the_diff(
    console: RunningConsole, finished: str, page: Any
) -> None:
    page.goto(console.page_url(f"/trace/{finished}/state?at=2&against=1"))
    field = page.locator("tr[data-field='draft']")
    field.wait_for()
    assert field.locator("td").nth(2).inner_text() == "writer"
    assert "draft" in page.get_by_test_id("diff").inner_text()
    # the hostile input is shown as the characters it is, escape code made visible
    shown = page.locator("tr[data-field='input'] pre").inner_text()
    assert "<script>window.__owned = 'script'</script>" in shown
    assert "\\u001b[31mred" in shown
    untouched(page)


def test_the_budget_page_shows_each_limit_and_the_burn_down(
    console: RunningConsole, finished: str, page: Any
) -> None:
    page.goto(console.page_url(f"/trace/{finished}/budget"))
    steps = page.locator("tr[data-limit='steps']")
    steps.wait_for()
    assert steps.locator("td").nth(2).inner_text() == "6"
    assert page.get_by_test_id("burn-steps").locator("polyline").count() == 1
    untouched(page)


def test_the_mesh_page_draws_the_agents_their_routes_replicas_and_lag(
    console: RunningConsole, finished: str, page: Any
) -> None:
    client, spec = console.mesh.client, console.mesh.spec

    def caught_up() -> dict[str, int] | None:
        # the finished trace's events are all consumed and committed; on Apache Kafka a
        # transaction's commit marker takes an offset too: at most one a partition is left
        groups = client.groups(spec)
        partitions = {g.agent: spec.topics.partitions * len(g.subscribes) for g in groups}
        if all(g.lag <= partitions[g.agent] for g in groups):
            return {g.agent: g.lag for g in groups}
        return None

    lags = wait_until(caught_up, 30, message="the agents caught up")
    page.goto(console.page_url("/mesh"))
    page.get_by_test_id("graph").wait_for()
    for agent in ("writer", "editor"):
        assert page.locator(f"[data-node='agent:{agent}']").count() == 1
        cells = page.locator(f"tr[data-agent='{agent}'] td")
        assert cells.nth(5).inner_text() == "1"  # one replica live in its consumer group
        assert cells.nth(6).inner_text() == str(lags[agent])  # nothing ran since


def test_a_dead_letter_fixed_and_requeued_from_the_page_is_processed(
    console: RunningConsole, page: Any
) -> None:
    trace_id = "console-requeue-1"
    broken = json.dumps({"trace_id": trace_id, "input": 42, "note": HOSTILE}).encode()
    _send_raw(console, trace_id, broken)
    client = console.mesh.client
    wait_until(lambda: client.dlq(trace_id), 30, message="the broken task's dead letter")

    page.goto(console.page_url("/dlq"))
    card = page.locator(f"[data-key='{trace_id}']")
    card.wait_for()
    original = card.get_by_test_id("original").inner_text()  # the JSON bytes, as text
    assert "<script>window.__owned = 'script'</script><img src=x onerror=" in original
    untouched(page)
    card.get_by_test_id("edit").click()
    fixed = {"trace_id": trace_id, "input": "Write about event sourcing."}
    card.get_by_test_id("fixed").fill(json.dumps(fixed))
    card.get_by_test_id("requeue").click()
    card.get_by_test_id("confirm-requeue").click()
    card.get_by_test_id("requeued").wait_for()

    result = client.wait(trace_id, timeout_s=60)
    assert result.status == "completed", result.reason
    assert len(client.read(client.topics.results, trace_id, TerminalResult)) == 1


def test_a_request_without_the_token_is_refused(console: RunningConsole) -> None:
    for path in ("/", "/app.js", "/api/traces", "/api/dlq", "/api/events"):
        assert httpx.get(console.base.rstrip("/") + path).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert httpx.get(console.base.rstrip("/") + path, headers=wrong).status_code == 401
    refused = httpx.post(console.base.rstrip("/") + "/api/dlq/0:0/requeue", json={})
    assert refused.status_code == 401
    answered = httpx.get(
        console.base.rstrip("/") + "/api/traces",
        headers={"Authorization": f"Bearer {console.token}"},
    )
    assert answered.status_code == 200


def test_what_the_console_lists_and_does_the_command_line_lists_and_does_too(
    console: RunningConsole,
    finished: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from choreo.cli.main import main as run

    def main(argv: list[str]) -> int:
        # in a thread of its own: this one runs the browser's event loop (Playwright's)
        with ThreadPoolExecutor(1) as thread:
            return thread.submit(run, argv).result()

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", console.mesh.bootstrap)
    monkeypatch.setenv("CHOREO_TOPIC_PREFIX", console.mesh.settings.topic_prefix)
    capsys.readouterr()
    assert main(["traces", "--status", "completed", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert finished in [t["trace_id"] for t in listed["traces"]]
    assert main(["groups", "--mesh", str(console.mesh.path), "--json"]) == 0
    assert [g["agent"] for g in json.loads(capsys.readouterr().out)] == ["writer", "editor"]
    assert main(["dlq", "requeue", "9:999999"]) == 1
    assert "no dead letter '9:999999'" in capsys.readouterr().err
