"""A step that raises ends failed and never pins its partition: its offset is committed, so
an agent replica SIGKILLed afterwards and started again runs nothing that had finished."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator

import pytest
from aiokafka import TopicPartition

from choreo.kafka.clients import read_topic
from tests.conftest import ProcessMesh, wait_until
from tests.liveness.support import committed, model_url, one_agent_mesh
from tests.tiers.support import server_stats

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mesh(
    start_mesh_processes: Callable[..., ProcessMesh], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessMesh]:
    folder = tmp_path_factory.mktemp("liveness")
    with start_mesh_processes(one_agent_mesh(folder), base_dir=folder) as running:
        yield running


def test_a_step_that_raises_ends_failed_and_never_pins_its_partition(mesh: ProcessMesh) -> None:
    url = model_url(mesh)
    tp = TopicPartition(mesh.topics.event("task.received"), 0)
    group = f"{mesh.settings.topic_prefix}.agent.solo"
    # Cut to 256 KiB and written to four fields, this step's record is over 1 MiB: the
    # producer refuses it, so the step raises.
    crashed = mesh.submit("wide please", trace_id="wide-1")
    later = [mesh.submit(f"whole task {i}", trace_id=f"after-wide-{i}") for i in range(5)]
    result = mesh.result(crashed)
    assert result.status == "failed"
    assert "MessageSizeTooLargeError" in result.reason
    for trace_id in later:
        assert mesh.result(trace_id).status == "completed"
    # past the last record, not the record count: on Apache Kafka the keeper writes the topic
    # in transactions, and each transaction's commit marker takes an offset too
    records = mesh.run(read_topic(mesh.bootstrap, mesh.settings, tp.topic, [tp.partition]))
    end = records[-1].offset + 1
    wait_until(
        lambda: committed(mesh, group, tp) == end,
        30,
        message="the agent's commit past every record, the crashed one included",
    )
    requests = server_stats(url)["requests"]

    solo = mesh.group.find("solo-1")
    assert solo.process is not None
    os.kill(solo.process.pid, signal.SIGKILL)
    solo.process.wait()
    mesh.group.start_choreo("solo-2", ["run", "agent", "--mesh", str(mesh.path), "--agent", "solo"])
    barrier = mesh.submit("whole barrier", trace_id="after-restart")
    assert mesh.result(barrier).status == "completed"
    assert server_stats(url)["requests"] == requests + 1  # nothing finished was run again
    for trace_id in [crashed, *later]:
        assert len(mesh.results(trace_id)) == 1
