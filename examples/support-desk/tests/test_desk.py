"""What the support desk does with a ticket: the router sends a ticket naming an order to the
Python lookup on SQLite, the desk model calls its Python tools and the knowledge base over
MCP, and the reviewer approves the reply, which is the result."""

from __future__ import annotations

from choreo.schemas import HopRecord, Task, TerminalResult
from choreo.testing import SyncMesh

BROKEN = "My order 1042 arrived broken, can I get a refund?"
WAIT_S = 60


def hops(mesh: SyncMesh, trace_id: str) -> list[HopRecord]:
    """The trace's steps in order."""
    return sorted(mesh.client.hops(trace_id), key=lambda h: (h.hop, h.state_version))


def results(mesh: SyncMesh, trace_id: str) -> list[TerminalResult]:
    """Every terminal record of the trace: there must be exactly one."""
    return mesh.client.read(mesh.topics.results, trace_id, TerminalResult)


def test_a_refund_request_flows_through_python_code_tools_and_mcp(desk: SyncMesh) -> None:
    trace_id = desk.client.submit(BROKEN)
    result = desk.client.wait(trace_id, timeout_s=WAIT_S)
    assert result.status == "completed", result.reason
    assert "full refund of 189.00 EUR" in result.output
    steps = hops(desk, trace_id)
    assert [h.agent for h in steps] == ["triage", "lookup", "desk", "reviewer"]
    assert all(h.status == "ok" for h in steps)
    # The Python agent's writes are folded into the state every later step reads.
    snapshot = desk.client.state(trace_id)
    assert snapshot.fields["order"]["item"] == "espresso grinder"
    assert snapshot.writes["order"].agent == "lookup"
    # Both calls of the desk's first turn ran, one in-process and one on the MCP server.
    calls = {c.name: c for c in steps[2].tool_calls}
    assert set(calls) == {"refund_eligibility", "kb_search"}
    assert all(c.status == "ok" and c.result_chars > 0 for c in calls.values())
    assert calls["kb_search"].server == "mcp:kb" and calls["refund_eligibility"].server is None
    assert all(c.arguments is None for c in calls.values())  # no content recording asked for
    assert steps[2].usage.calls == 2  # the model was asked twice: tool calls, then the answer
    assert len(results(desk, trace_id)) == 1


def test_an_unknown_order_still_gets_an_answer(desk: SyncMesh) -> None:
    trace_id = desk.client.submit("Where is order 9999?")
    result = desk.client.wait(trace_id, timeout_s=WAIT_S)
    assert result.status == "completed", result.reason
    assert desk.client.state(trace_id).fields["notes"] == "no order 9999 on file"


def test_a_parcel_on_its_way_is_looked_up_with_the_shipping_tool(desk: SyncMesh) -> None:
    trace_id = desk.client.submit("Where is my order 1043? It has been a week.")
    result = desk.client.wait(trace_id, timeout_s=WAIT_S)
    assert result.status == "completed", result.reason
    assert "on its way" in result.output
    steps = hops(desk, trace_id)
    assert [c.name for c in steps[2].tool_calls] == ["shipping_status"]
    assert desk.client.state(trace_id).fields["order"]["status"] == "shipped"


def test_a_ticket_without_an_order_number_skips_the_lookup(desk: SyncMesh) -> None:
    trace_id = desk.client.submit("Do you ship to Iceland?")
    result = desk.client.wait(trace_id, timeout_s=WAIT_S)
    assert result.status == "completed", result.reason
    assert "order number" in result.output  # the desk asks for it
    steps = hops(desk, trace_id)
    assert [h.agent for h in steps] == ["triage", "desk", "reviewer"]
    assert steps[1].tool_calls == []  # nothing to look up


def test_each_ticket_ends_once_with_its_own_answer(desk: SyncMesh) -> None:
    tickets = {
        "refund": Task(input=BROKEN),
        "parcel": Task(input="Has order 1043 shipped yet?"),
        "general": Task(input="What are your opening hours?"),
    }
    sent = {name: desk.client.submit(task) for name, task in tickets.items()}
    answers = {name: desk.client.wait(t, timeout_s=WAIT_S).output for name, t in sent.items()}
    assert "189.00 EUR" in answers["refund"]
    assert "on its way" in answers["parcel"]
    assert "order number" in answers["general"]
    assert all(len(results(desk, trace_id)) == 1 for trace_id in sent.values())
