"""The router topology end to end: each ticket goes to exactly one, the right, worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conftest import EXAMPLES, RunningMesh

pytestmark = pytest.mark.integration

#: (ticket, worker that must answer it, how the router must have decided)
LABELLED = [
    ("The app crashes when I upload a photo.", "engineer", "model"),
    ("Export fails with error 500 since this morning.", "engineer", "model"),
    ("[ambiguous] The settings page is broken on Safari.", "engineer", "rules"),
    ("I was charged twice for my subscription.", "accounts", "model"),
    ("Where can I download last month's invoice?", "accounts", "model"),
    ("[ambiguous] Please refund the unused part of my plan.", "accounts", "rules"),
    ("Do you have an office in Lisbon?", "general", "model"),
    ("How do I invite a colleague to my team?", "general", "model"),
    ("[ambiguous] What are your support hours?", "general", "rules"),
]


@pytest.fixture(scope="module")
def triage(start_mesh: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh(EXAMPLES / "triage" / "mesh.yaml") as mesh:
        yield mesh


def test_each_labelled_ticket_reaches_exactly_the_right_worker(triage: RunningMesh) -> None:
    traces = [(triage.submit(text), worker, method) for text, worker, method in LABELLED]
    for trace_id, worker, method in traces:
        result = triage.result(trace_id)
        assert result.status == "completed", result.reason
        assert result.output.startswith(f"{worker.upper()}:")
        steps = triage.hops(trace_id)
        assert [h.agent for h in steps] == ["triage", worker]
        how = "model" if method == "model" else "rules (model answered 'unsure')"
        assert steps[0].output.endswith(f"(by {how})"), steps[0].output
        assert result.usage.hops == 2
