"""Children started through choreo.kafka.children die with their parent when it is killed
with SIGKILL, whatever thread started them and even when they ignore SIGTERM: started from the
main thread, from a thread that has since ended, and behind the exec wrapper the MCP stdio
servers run behind (started by asyncio in a session of their own, as the MCP SDK does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

from tests.conftest import processes_marked, wait_until

PROBE = "CHOREO_TEST_CHILDREN_PROBE"

#: A child that ignores SIGTERM and would otherwise run for ten minutes.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"

PARENT = f"""
import asyncio, sys, threading
from choreo.kafka.children import lifeline_argv, popen
stubborn = [sys.executable, "-c", {STUBBORN!r}]
popen(stubborn, start_new_session=True)
worker = threading.Thread(target=popen, args=(stubborn,), kwargs={{"start_new_session": True}})
worker.start()
worker.join()  # the thread that asked for the child is gone; the child must not be

async def main():
    await asyncio.create_subprocess_exec(*lifeline_argv(stubborn), start_new_session=True)
    print("started", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_children_die_with_a_parent_killed_by_sigkill_whoever_started_them() -> None:
    probe = uuid.uuid4().hex
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        env={**os.environ, PROBE: probe},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "started\n"
        children = [pid for pid in processes_marked(PROBE, probe) if pid != parent.pid]
        assert len(children) == 3, children  # the thread's child outlived the thread
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    wait_until(lambda: not processes_marked(PROBE, probe), 10, message="the children to end")
