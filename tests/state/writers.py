"""Three writers racing on one trace (concurrent/mesh.yaml), as module fixtures: the mesh, and
four traces run to their end on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningMesh

HERE = Path(__file__).parent
WRITERS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def writers(start_mesh: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh(HERE / "concurrent" / "mesh.yaml") as mesh:
        yield mesh


@pytest.fixture(scope="module")
def finished(writers: RunningMesh) -> list[str]:
    """Four traces, each raced by the three writers, all run to their end."""
    traces = [writers.submit(f"race {i}", trace_id=f"race-{i}") for i in range(4)]
    for trace_id in traces:
        result = writers.result(trace_id)
        assert result.status == "completed", result.reason
    return traces
