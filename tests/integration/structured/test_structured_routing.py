"""Routes asked for as structured output, through a real mesh and real HTTP (the scripted
model stands in for a tier that takes a JSON schema): the model's choice routes the step,
the text it wrote is what the state records, and a tool agent whose answer matches no
pattern is asked for its route alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import LocalMesh

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def mesh(start_mesh: Callable[..., LocalMesh]) -> Iterator[LocalMesh]:
    with start_mesh(HERE / "mesh.yaml") as running:
        yield running


def test_a_route_named_as_structured_output_ends_the_trace_with_the_text_written(
    mesh: LocalMesh,
) -> None:
    trace_id = mesh.submit("Where is my order 7?")
    result = mesh.result(trace_id)
    assert result.status == "completed"
    assert result.output == "Your order has shipped and is on its way."
    steps = mesh.client.steps(trace_id)
    routed = {s.source: s.payload.get("routed_by") for s in steps if s.source != "task"}
    assert routed == {"desk": "structured output", "reviewer": "structured output"}
    assert mesh.client.state(trace_id).fields["review"] == "Polite and correct."


def test_a_cut_structured_answer_still_takes_its_route(mesh: LocalMesh) -> None:
    trace_id = mesh.submit("This is urgent: where is order 7?")
    result = mesh.result(trace_id)
    assert result.status == "failed"
    assert "Too curt" in (result.reason or "")


def test_a_tool_agent_asked_for_its_route_can_choose_the_catch_all(mesh: LocalMesh) -> None:
    trace_id = mesh.submit("My parcel is lost")
    result = mesh.result(trace_id)
    assert result.status == "failed"
    assert result.reason is not None and result.reason.startswith("desk ended the trace")
