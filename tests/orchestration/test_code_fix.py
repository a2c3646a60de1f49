"""Generated code runs in the sandbox, failures go back to the engineer, and the watchdog stops
the infinite audit loop. Real parts: the broker, keeper, agents, sandbox (bubblewrap) and
watchdog, in one event loop."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from choreo.schemas import Budget
from tests.conftest import EXAMPLES, RunningMesh, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        shutil.which("bwrap") is None,
        reason="bubblewrap is not installed (apt-get install bubblewrap): "
        "the sandbox refuses to run code without isolation",
    ),
]

TASK = (
    "Write slugify(title) in solution.py: lowercase words of letters and digits, "
    "joined by single hyphens, punctuation dropped."
)


@pytest.fixture(scope="module")
def code_fix(start_mesh: Callable[..., RunningMesh]) -> Iterator[RunningMesh]:
    with start_mesh(EXAMPLES / "code-fix" / "mesh.yaml", watchdog=True) as mesh:
        yield mesh


def test_the_tester_runs_the_code_in_the_sandbox_and_the_engineer_fixes_it(
    code_fix: RunningMesh,
) -> None:
    trace_id = code_fix.submit(TASK)
    result = code_fix.result(trace_id)
    assert result.status == "completed", result.reason
    assert 're.findall(r"[a-z0-9]+"' in result.output  # the fixed version is the result

    steps = code_fix.hops(trace_id)
    assert [(h.agent, h.type) for h in steps] == [
        ("engineer", "code.ready"),
        ("tester", "test.failed"),
        ("engineer", "code.ready"),
        ("tester", "trace.finish"),
    ]
    failed, passed = steps[1].output, steps[3].output
    # what only a real run can print: the interpreter's traceback, and the script's own line
    assert "[sandbox: error, exit 1]" in failed
    assert "AssertionError: slugify('Hello, World!') == 'hello,-world!'" in failed
    assert "[sandbox: ok, exit 0]" in passed and "all 3 tests passed" in passed


async def _watchdog_caught_up(mesh: RunningMesh, partition: int, offset: int) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=mesh.bootstrap)
    await admin.start()
    try:
        tp = TopicPartition(mesh.topics.hops, partition)
        committed = await admin.list_consumer_group_offsets(
            f"{mesh.settings.topic_prefix}-watchdog", partitions=[tp]
        )
    finally:
        await admin.close()
    meta = committed.get(tp)
    return meta is not None and meta.offset >= offset


def test_the_watchdog_halts_the_infinite_audit_loop(code_fix: RunningMesh) -> None:
    # The watchdog reads the hop records of a trace run first: it is watching.
    probe = code_fix.submit(TASK)
    assert code_fix.result(probe).status == "completed"
    last = code_fix.hops(probe)[-1]
    partition = code_fix.run(_partition_of(code_fix, probe))
    wait_until(
        lambda: code_fix.run(_watchdog_caught_up(code_fix, partition, 1)),
        120,
        interval=1.0,
        message=f"the watchdog to read hop records (last: {last.hop})",
    )

    trace_id = code_fix.submit(f"[audit] {TASK}", budget=Budget(max_hops=40))
    result = code_fix.result(trace_id, timeout=180)
    assert result.status == "halted"
    assert result.reason is not None and result.reason.startswith("loop."), result.reason
    assert result.usage.hops < 40  # caught by the watchdog, not by the hop budget
    agents = [h.agent for h in code_fix.hops(trace_id)]
    assert agents[:4] == ["engineer", "tester", "engineer", "tester"]
    assert len(code_fix.results(trace_id)) == 1


async def _partition_of(mesh: RunningMesh, trace_id: str) -> int:
    from choreo.kafka.clients import read_topic

    for record in await read_topic(mesh.bootstrap, mesh.settings, mesh.topics.hops):
        if record.key == trace_id.encode():
            return record.partition
    raise AssertionError(f"no hop record of {trace_id}")
