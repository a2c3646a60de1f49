"""A 1,000-step trace survives a keeper SIGKILL: replaying its outbox gives, at every version
the live keeper published on the state log (a full snapshot, or the one before it with a delta
folded), the very state it published (docs/ARCHITECTURE.md, "Long traces").

The one long test of the suite: one trace, lines of 64 bytes (the state stays small, so it is
the number of steps that is long), the keeper killed a third of the way through."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord

from choreo.bench import long
from choreo.kafka.blobs import BlobReader
from choreo.kafka.broker import BrokerHandle, broker_kind
from choreo.kafka.clients import read_topic
from choreo.keeper.replay import history
from choreo.observe.settings import Settings
from choreo.schemas import Snapshot
from choreo.schemas.deltas import fold_deltas, of_trace, read_state
from tests.conftest import ProcessMesh, wait_until
from tests.processes.test_failover import kill

pytestmark = pytest.mark.integration

STEPS = 1000


@pytest.mark.timeout(900)
def test_replay_after_a_keeper_sigkill_equals_the_live_state_at_every_version(
    broker: BrokerHandle, start_test_mesh_processes: Callable[..., ProcessMesh], tmp_path: Path
) -> None:
    if broker_kind(broker.bootstrap) != "embedded":
        pytest.skip(
            "run on the embedded broker only, to keep the suite's one long test cheap: a "
            "keeper SIGKILL on Apache Kafka (aborted transactions) is test_failover's, with "
            "the same replay check on shorter traces"
        )
    mesh = start_test_mesh_processes(long.long_mesh(), base_dir=tmp_path)
    trace_id = mesh.submit("write", trace_id="long-1", initial_state={"goal": STEPS, "width": 64})
    wait_until(lambda: len(mesh.hops(trace_id)) >= STEPS // 3, 300, message="a third")
    kill(mesh, "keeper")
    mesh.group.start_choreo("keeper-restarted", ["run", "keeper", "--mesh", str(mesh.path)])
    result = mesh.result(trace_id, timeout=600)
    assert (result.status, result.output) == ("completed", STEPS), result.reason

    outbox = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.outbox))
    versions = history(mesh.spec, mesh.topics, outbox, trace_id)
    assert len(versions) == STEPS + 1  # the admission, then one version per step
    state = mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.state))
    published = mesh.run(fetched(mesh.bootstrap, mesh.settings, live_versions(state, trace_id)))
    for live in published:
        assert msgspec.to_builtins(versions[live.version - 1]) == msgspec.to_builtins(live)
    seen = {s.version for s in published}
    assert min(seen) < STEPS // 3 < max(seen) == STEPS + 1  # before and after the kill
    assert len(seen) > STEPS // 2  # a version per keeper batch, deltas and snapshots alike
    assert versions[-1].fields["n"] == STEPS and len(versions[-1].fields["log"]) == STEPS


def live_versions(records: list[ConsumerRecord[bytes, bytes]], trace_id: str) -> list[Snapshot]:
    """Every version of the trace the state log gives, in log order: each full snapshot, and
    the state after each delta that follows the version before it (a delta written again
    after the kill, from a version already passed, is skipped)."""
    found: list[Snapshot] = []
    for record in records:
        if not record.value or not of_trace(record.key, trace_id):
            continue
        read = read_state(record.value)
        if isinstance(read, Snapshot):
            found.append(read)
        elif found and read.base_version == found[-1].version:
            found.append(fold_deltas(found[-1], [read]))
    return found


async def fetched(bootstrap: str, settings: Settings, snapshots: list[Snapshot]) -> list[Snapshot]:
    """``snapshots`` with their state values by reference fetched, as every reader does
    (choreo.kafka.blobs)."""
    reader = BlobReader(bootstrap, settings, "test-reader-blobs")
    try:
        return [msgspec.structs.replace(s, fields=await reader.state(s.fields)) for s in snapshots]
    finally:
        await reader.close()
