"""User code that ends its process or pins its threads, through real agent processes:

- an agent whose sync tools hang (``time.sleep``, a blocking socket read in C) still stops
  on SIGTERM within its grace period, having drained: the hung threads do not hold it;
- a handler that ends the process (``os._exit``, a segfault in C) on one record does not
  crash-loop its agent: restarted (as ``choreo up`` does, choreo.local.supervise), the agent
  runs that record again alone, and after it ended the process a second time, dead-letters it
  and ends its trace once, with the cause, while every other trace completes.

(Every exception class a handler or tool can raise, in one process: tests/platform/
test_user_code.py.)
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from choreo.kafka.broker import BrokerHandle, broker_kind
from choreo.kafka.clients import read_topic
from choreo.local.supervise import Supervisor
from choreo.schemas import Envelope, decode
from choreo.schemas.records import DeadLetter
from tests.conftest import ProcessMesh, wait_until

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
#: Seconds an agent lets its steps finish on SIGTERM before cancelling them.
GRACE_S = 2


def fragile_mesh() -> dict[str, Any]:
    return {
        "name": "fragile",
        "entry": ["job"],
        "python_path": [str(HERE)],
        "models": {"scripted": {"model": "fragile", "script": str(HERE / "fragile_model.yaml")}},
        "budgets": {"max_hops": 4, "max_seconds": 300},
        "agents": [
            {
                "name": "fragile",
                "kind": "python",
                "handler": "fragile:handle",
                "subscribe": ["job"],
                "emit": ["tools.asked"],
            },
            {
                "name": "stuck",
                "subscribe": ["tools.asked"],
                "model": "scripted",
                "persona": "You are the stuck tester.",
                "tools": [{"function": "fragile:sleepy"}, {"function": "fragile:reader"}],
                "tool_timeout_s": 600,
                "routes": [{"finish": True, "output": "input"}],
            },
        ],
    }


@pytest.fixture(scope="module")
def mesh(
    start_mesh_processes: Callable[..., ProcessMesh], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessMesh]:
    folder = tmp_path_factory.mktemp("fragile")
    env = {
        "CHOREO_MARKERS_DIR": str(folder / "markers"),
        "CHOREO_SHUTDOWN_GRACE_S": str(GRACE_S),
        "FRAGILE_STARTED": str(folder / "started"),
    }
    (folder / "started").mkdir()
    with start_mesh_processes(fragile_mesh(), base_dir=folder, env=env) as running:
        yield running


def test_an_agent_whose_tool_threads_hang_stops_on_sigterm_after_its_drain(
    mesh: ProcessMesh, broker: BrokerHandle
) -> None:
    if broker_kind(broker.bootstrap) == "kafka":
        pytest.skip("about the agent's threads and signals, not the broker: run on the embedded")
    started = Path(mesh.group.env["FRAGILE_STARTED"])
    mesh.submit("tools please")
    wait_until(
        lambda: {p.name for p in started.iterdir()} == {"sleepy", "reader"},
        90,
        message="both stuck tools running",
    )
    agent = mesh.group.find("stuck-1")
    assert agent.process is not None
    os.kill(agent.process.pid, signal.SIGTERM)
    code = agent.process.wait(timeout=GRACE_S + 30)  # not the hung threads' hour
    assert code == 0
    log = agent.log_path.read_text()
    assert "steps cancelled: their partition moves or the agent stops" in log
    assert log.count("tool thread abandoned") == 2


def test_a_handler_raising_what_is_no_exception_fails_its_step_and_the_process_lives(
    mesh: ProcessMesh,
) -> None:
    reasons = {
        "interrupt": "fragile: KeyboardInterrupt: pressed",
        "sysexit": "fragile: SystemExit: 3",
        "cancel": "fragile: asyncio.exceptions.CancelledError: a library's scope",
    }
    traces = {word: mesh.submit(word) for word in reasons}
    for word, trace_id in traces.items():
        result = mesh.result(trace_id)
        assert (result.status, result.reason) == ("failed", reasons[word])
    assert mesh.group.find("fragile-1").status == "running"


def test_a_record_that_ends_the_process_is_dead_lettered_not_run_forever(
    mesh: ProcessMesh,
) -> None:
    supervisor = Supervisor(mesh.group, first_delay_s=0.5)
    events: list[str] = []
    crashing = {word: mesh.submit(f"{word} now") for word in ("exit", "segfault")}
    fine = [mesh.submit(f"fine {n}") for n in range(3)]

    def ended() -> bool:
        events.extend(supervisor.check())
        return all(mesh.results(t) for t in [*crashing.values(), *fine])

    wait_until(ended, 180, interval=0.5, message="every trace's end, with restarts")
    for trace_id in fine:
        assert mesh.result(trace_id).status == "completed"
    for word, trace_id in crashing.items():
        assert len(mesh.results(trace_id)) == 1, word
        result = mesh.result(trace_id)
        assert result.status == "failed", word
        assert result.reason == (
            "fragile: this record's step ended the agent process 2 times (the last time "
            "running alone): not run again"
        ), result.reason
    letters = [
        decode(r.value or b"", DeadLetter)
        for r in mesh.run(read_topic(mesh.bootstrap, mesh.settings, mesh.topics.dlq))
    ]
    assert {decode(d.original, Envelope).trace_id for d in letters} == set(crashing.values())
    assert all("ended the agent process 2 times" in d.reason for d in letters)
    # each culprit ended the process at most twice (once with others, once alone): no loop
    assert supervisor.restarts["fragile-1"] <= 4, events
