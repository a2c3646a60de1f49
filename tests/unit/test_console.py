"""The console's parts that need no broker: the token on every request, the traces list's
filters and pages, the summaries read from snapshot and result records, and what the state
page shows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka.structs import ConsumerRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from choreo.client import TracePage, TraceSummary
from choreo.client._traces import summaries
from choreo.console.auth import COOKIE, TokenGuard, new_token
from choreo.console.views import state_view
from choreo.schemas import FieldWrite, Snapshot, TerminalResult, Totals, encode

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class _Guarded:
    """A blocking HTTP client of a one-page app behind ``TokenGuard``; keeps its cookies."""

    def __init__(self, token: str) -> None:
        app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("in"))])
        self._transport = httpx.ASGITransport(app=TokenGuard(app, token))
        self._cookies = httpx.Cookies()

    def get(self, url: str, **options: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=self._transport, base_url="http://console", cookies=self._cookies
            ) as client:
                answer = await client.get(url, **options)
                self._cookies.update(client.cookies)
                return answer

        return asyncio.run(go())


def _guarded(token: str) -> _Guarded:
    return _Guarded(token)


def test_a_request_without_the_right_token_is_refused() -> None:
    token = new_token()
    client = _guarded(token)
    assert client.get("/").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/", headers={"Cookie": f"{COOKIE}=wrong"}).status_code == 401


def test_the_token_in_the_address_sets_a_strict_cookie_that_then_suffices() -> None:
    token = new_token()
    client = _guarded(token)
    first = client.get(f"/?token={token}")
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert f"{COOKIE}={token}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "script-src 'self'" in first.headers["content-security-policy"]
    assert client.get("/").status_code == 200  # the cookie carries it now
    header = _guarded(token).get("/", headers={"Authorization": f"Bearer {token}"})
    assert header.status_code == 200 and "set-cookie" not in header.headers


def test_two_tokens_are_never_the_same() -> None:
    assert len({new_token() for _ in range(100)}) == 100


summary = st.builds(
    TraceSummary,
    trace_id=st.text("abcdef0123", min_size=1, max_size=8),
    status=st.sampled_from(["running", "completed", "failed", "halted"]),
    admitted_at=st.just(T0),
    updated_at=st.just(T0),
    hops=st.integers(0, 50),
    tokens=st.integers(0, 10_000),
    cost=st.floats(0, 1),
    last_agent=st.sampled_from([None, "writer", "editor"]),
    reason=st.sampled_from([None, "budget.hops: used 2", "editor: ValueError"]),
    agents=st.sampled_from([(), ("writer",), ("editor", "writer")]),
)


@settings(deadline=None)  # timing on shared cores is no property of the filter
@given(
    traces=st.lists(summary, max_size=40),
    status=st.sampled_from([None, "running", "completed", "failed", "halted"]),
    agent=st.sampled_from([None, "writer", "editor"]),
    text=st.sampled_from([None, "", "BUDGET", "a", "writer"]),
    limit=st.integers(1, 15),
)
def test_pages_of_a_filter_hold_every_match_once_in_order(
    traces: list[TraceSummary],
    status: str | None,
    agent: str | None,
    text: str | None,
    limit: int,
) -> None:
    whole = TracePage.of(traces, status=status, agent=agent, text=text, limit=None)
    pages = [
        TracePage.of(traces, status=status, agent=agent, text=text, offset=o, limit=limit)
        for o in range(0, max(whole.total, 1), limit)
    ]
    assert [t for p in pages for t in p.traces] == whole.traces
    assert all(p.total == whole.total == len(whole.traces) for p in pages)
    for t in whole.traces:
        assert status is None or t.status == status
        assert agent is None or agent in t.agents
        needle = (text or "").casefold()
        assert any(needle in (v or "").casefold() for v in (t.trace_id, t.last_agent, t.reason))
    left_out = [t for t in traces if t not in whole.traces]
    for t in left_out:
        assert (
            (status is not None and t.status != status)
            or (agent is not None and agent not in t.agents)
            or not any(
                (text or "").casefold() in (v or "").casefold()
                for v in (t.trace_id, t.last_agent, t.reason)
            )
        )


def _record(value: bytes, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="t",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=(),
    )


def _snapshot(trace_id: str, version: int, status: str = "running", **more: object) -> Snapshot:
    return Snapshot(
        trace_id=trace_id,
        version=version,
        status=status,  # type: ignore[arg-type]
        admitted_at=T0,
        updated_at=T0 + timedelta(seconds=version),
        **more,  # type: ignore[arg-type]
    )


def test_a_summary_is_the_newest_version_with_the_terminal_record_s_word_on_status() -> None:
    writes = {
        "draft": FieldWrite(version=2, agent="writer"),
        "review": FieldWrite(version=3, agent="editor"),
    }
    states = [
        _record(encode(_snapshot("a", 1)), 0),
        _record(
            encode(
                _snapshot("a", 3, writes=writes, totals=Totals(hops=2, tokens_in=5, tokens_out=7))
            ),
            1,
        ),
        _record(encode(_snapshot("a", 2)), 2),  # late, older: not the newest
        _record(b"not json <script>", 3),
        _record(encode(_snapshot("b", 1)), 4),
    ]
    results = [
        _record(encode(TerminalResult(trace_id="a", status="halted", reason="budget.hops")), 0)
    ]
    found = {s.trace_id: s for s in summaries(states, results)}
    assert set(found) == {"a", "b"}
    a = found["a"]
    assert (a.status, a.hops, a.tokens, a.last_agent, a.reason) == (
        "halted",
        2,
        12,
        "editor",
        "budget.hops",
    )
    assert found["b"].status == "running" and found["b"].last_agent is None


def test_the_state_page_shows_writers_and_the_diff_between_any_two_versions() -> None:
    versions = [
        _snapshot("a", 1, fields={"input": "<b>hi</b>"}),
        _snapshot(
            "a",
            2,
            fields={"input": "<b>hi</b>", "draft": "one"},
            writes={"draft": FieldWrite(version=2, agent="writer")},
        ),
        _snapshot(
            "a",
            3,
            fields={"draft": ["two"]},
            writes={"draft": FieldWrite(version=3, agent="editor")},
        ),
    ]
    shown = state_view(versions, at=3, against=1, conflicts=[])
    assert shown["fields"] == [
        {"name": "draft", "value": '[\n "two"\n]', "writer": "editor", "written_at": 3}
    ]
    kinds = {d["name"]: d["kind"] for d in shown["diff"]}
    assert kinds == {"draft": "added", "input": "removed"}
    nothing_before = state_view(versions, at=2, against=0, conflicts=[])
    assert {d["kind"] for d in nothing_before["diff"]} == {"added"}
    assert nothing_before["fields"][1] == {
        "name": "input",
        "value": "<b>hi</b>",
        "writer": None,
        "written_at": None,
    }
