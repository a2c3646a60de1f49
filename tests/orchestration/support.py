"""What the orchestration tests read back from a running mesh."""

from __future__ import annotations

from schemas import HopRecord, Snapshot
from services.cli import queries
from tests.conftest import RunningMesh


def hops(mesh: RunningMesh, trace_id: str) -> list[HopRecord]:
    """The trace's hop records in step order."""
    records = mesh.run(queries.hops(mesh.bootstrap, mesh.settings, mesh.topics.hops, trace_id))
    return sorted(records, key=lambda h: (h.hop, h.state_version))


def snapshot(mesh: RunningMesh, trace_id: str) -> Snapshot:
    return mesh.run(queries.latest_snapshot(mesh.bootstrap, mesh.settings, mesh.topics.state,
                                            trace_id))
