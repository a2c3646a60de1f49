"""A model agent in a trace whose state is past the broker's record limit: every state value
over the blob threshold travels by reference (docs/ARCHITECTURE.md, "Long traces"), so no
record outgrows the limit, and the agent, `choreo state` and a replay all see the values
whole."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from choreo.kafka.clients import read_topic
from choreo.kafka.limits import HEADROOM
from choreo.keeper.replay import history
from choreo.schemas import Snapshot
from choreo.schemas.blobs import refs_in
from tests.conftest import RunningMesh
from tests.processes.test_long_trace import fetched, live_versions
from tests.state.big_values.grow import LINES, WIDTH, line

pytestmark = pytest.mark.integration

MESH = Path(__file__).parent / "big_values" / "mesh.yaml"
TRACE = "big-values"


@pytest.fixture(scope="module")
def mesh(start_mesh: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh(MESH) as m:
        yield m


@pytest.fixture(scope="module")
def ended(mesh: RunningMesh) -> str:
    """The trace run to its end: 24 lines of 50 KB (1.2 MB), then the review."""
    assert mesh.settings.max_record_bytes < LINES * WIDTH
    mesh.submit("grow", trace_id=TRACE)
    return TRACE


def test_a_model_agent_sees_a_state_past_the_record_limit_whole(
    mesh: RunningMesh, ended: str
) -> None:
    result = mesh.result(ended, timeout=180)
    assert (result.status, result.output) == ("completed", f"saw all {LINES} lines"), result.reason


def test_no_record_of_the_trace_passes_the_record_limit(mesh: RunningMesh, ended: str) -> None:
    mesh.result(ended, timeout=180)
    limit = mesh.settings.max_record_bytes - HEADROOM
    topics = mesh.topics
    for topic in (topics.state, topics.hops, topics.outbox, topics.event("review.requested")):
        records = mesh.run(read_topic(mesh.bootstrap, mesh.settings, topic))
        assert records, topic
        assert max(len(r.value or b"") for r in records) <= limit, topic
    review = mesh.run(read_topic(mesh.bootstrap, mesh.settings, topics.event("review.requested")))
    assert b'"$blob"' in review[0].value  # the log went by reference


def test_the_ended_traces_state_shows_the_whole_log(mesh: RunningMesh, ended: str) -> None:
    mesh.result(ended, timeout=180)
    state = mesh.snapshot(ended)
    assert state.status == "completed"
    assert state.fields["log"] == [line(n) for n in range(1, LINES + 1)]
    assert state.fields["verdict"] == f"saw all {LINES} lines"


def test_a_replay_of_the_outbox_equals_every_version_the_state_log_holds(
    mesh: RunningMesh, ended: str
) -> None:
    mesh.result(ended, timeout=180)
    outbox = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.outbox))
    replayed = history(mesh.spec, mesh.topics, outbox, ended)
    state = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.state))
    published = mesh.run(fetched(mesh.bootstrap, mesh.settings, live_versions(state, ended)))
    assert any(refs_in(s.fields) for s in live_versions(state, ended))  # some went by reference
    assert len(published) >= LINES
    for live in published:
        assert _plain(replayed[live.version - 1]) == _plain(live), live.version


def _plain(snapshot: Snapshot) -> Any:
    return msgspec.to_builtins(snapshot)
