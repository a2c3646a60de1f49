"""The long workload (``choreo bench long``) in LangGraph with SQLite checkpoints.

One node appends a line of ``--width`` bytes to an ``operator.add`` list and adds 1 to a
counter, then loops to itself until the counter reaches ``--steps``; every step is
checkpointed by ``AsyncSqliteSaver`` into a file, as a LangGraph user keeping a durable
thread would. Per step range: the time between consecutive steps (each streamed update) and
over the run, the bytes the process wrote to the file system (``wchar`` of
``/proc/self/io``, the WAL included) and its CPU. The lines are the mesh run's
(``choreo.bench.long.line``).

Run: ``.venv/bin/pip install -r benchmarks/requirements.txt`` then
``.venv/bin/python benchmarks/peers/long_side.py --steps 1000``.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import tempfile
import time
from pathlib import Path
from typing import Annotated, TypedDict

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from choreo.bench.long import LINE_BYTES, RANGES, line
from choreo.bench.stats import Summary


class LongState(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    n: Annotated[int, operator.add]
    goal: int
    width: int


def written_bytes() -> int:
    """Bytes this process has passed to write calls so far."""
    for entry in Path("/proc/self/io").read_text().splitlines():
        name, _, value = entry.partition(":")
        if name == "wchar":
            return int(value)
    raise RuntimeError("/proc/self/io has no wchar")


def long_graph() -> StateGraph:
    graph = StateGraph(LongState)

    async def writer(state: LongState) -> LongState:
        return {"log": [line(state.get("n", 0) + 1, state["width"])], "n": 1}

    graph.add_node("writer", writer)
    graph.add_edge(START, "writer")
    graph.add_conditional_edges("writer", lambda s: END if s["n"] >= s["goal"] else "writer")
    return graph


async def run(steps: int, width: int, folder: Path) -> tuple[list[float], list[int], float]:
    """Each step's time (seconds since the start), the bytes written in each step, and the
    CPU seconds of the whole run."""
    async with AsyncSqliteSaver.from_conn_string(str(folder / "long.sqlite")) as saver:
        app = long_graph().compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "long-1"}, "recursion_limit": steps + 10}
        times: list[float] = []
        written: list[int] = []
        cpu, started, before = time.process_time(), time.perf_counter(), written_bytes()
        state = {"goal": steps, "width": width, "n": 0, "log": []}
        async for _ in app.astream(state, config, stream_mode="updates"):
            times.append(time.perf_counter() - started)
            now = written_bytes()
            written.append(now - before)
            before = now
        return times, written, time.process_time() - cpu


def report(times: list[float], written: list[int], cpu_s: float, command: str) -> str:
    rows = []
    for first, last in RANGES:
        last = min(last, len(times))
        if first >= last:
            break
        between = Summary.of([times[k - 1] - times[k - 2] for k in range(max(first, 2), last + 1)])
        rows.append(
            f"| {first}-{last} | {between.p50 * 1000:.2f} ms | {between.mean * 1000:.2f} ms |"
        )
    table = "\n".join(rows)
    return f"""
Command: `{command}` (LangGraph + AsyncSqliteSaver, one process)

{len(times)} steps in {times[-1]:.1f} s, {cpu_s:.1f} s of CPU; {sum(written) / 2**20:,.1f} MiB
written to the SQLite file and its WAL, {sum(written) / len(written) / 1024:,.1f} KiB per step
on average (checkpoints are written behind the stream, so bytes cannot be told per step).
Time between consecutive steps, median and mean over the range:

| steps | time between steps, p50 | mean |
| --- | ---: | ---: |
{table}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps (default: 1000)")
    parser.add_argument(
        "--width", type=int, default=LINE_BYTES, help=f"bytes per line (default: {LINE_BYTES})"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="langgraph-long-") as folder:
        times, written, cpu_s = asyncio.run(run(args.steps, args.width, Path(folder)))
    command = f"python benchmarks/peers/long_side.py --steps {args.steps} --width {args.width}"
    print(report(times, written, cpu_s, command))


if __name__ == "__main__":
    main()
