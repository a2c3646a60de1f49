"""How traces end on a real small model: the writer-editor and support-desk examples on
SmolLM2-135M-Instruct, served on this machine by llama.cpp (the local-model extra).

Each example's ``local-model.yaml`` serves ``--tasks`` tasks, ``--in-flight`` at a time, in
one mesh with its watchdog (choreo.testing.Mesh, the model server a process of its own);
then every trace's terminal records are counted (exactly one each) and the endings tallied by
status and reason. ``--patterns-only`` turns structured routing off (the tier's
``structured_output: null``), which is how the examples routed before it: the figure to compare.

    python -m benchmarks.real_model --tasks 6
    python -m benchmarks.real_model --tasks 6 --patterns-only

docs/MODELS.md, "A real model on this machine", publishes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from choreo.schemas import Budget, HopRecord, TerminalResult
from choreo.spec.mesh import MeshSpec, load_mesh
from choreo.testing import Mesh

_TIME = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+(?:[+-]\d\d:\d\d|Z)?")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

#: The writer/editor's briefs and the support desk's tickets, cycled for more tasks.
BRIEFS = (
    "Write a short piece on why event-driven agents need shared, versioned state.",
    "Explain to a new engineer what a Kafka consumer group is.",
    "Write a short note on why retries need idempotent handlers.",
    "Describe in a few sentences what a dead-letter queue is for.",
    "Write a short piece on the trade-offs of event sourcing.",
    "Explain why a budget on hops keeps agent loops finite.",
)
TICKETS = (
    "My order 1042 arrived broken, can I get a refund?",
    "Where is my order 1043? It has not arrived.",
    "How do I change the address on my account?",
    "Order 1044 is late, what is its shipping status?",
    "Can I return a gift I received three weeks ago?",
    "I want a refund for order 1042, I changed my mind.",
)


@dataclass(frozen=True)
class Ended:
    """How one trace ended: its terminal records (exactly one, if the promise holds), and
    its hop records (each model call's usage as the client read it from the server)."""

    trace_id: str
    results: list[TerminalResult]
    hops: list[HopRecord]

    @property
    def outcome(self) -> str:
        """``status: reason`` with the reason's trace-specific parts (numbers, quoted
        text, what follows a colon) cut, so endings of one kind count together."""
        last = self.results[-1]
        if last.status == "completed" or not last.reason:
            return last.status
        reason = _TIME.sub("<time>", last.reason)
        parts = re.split(r": |\n", re.sub(r"\d+(\.\d+)?", "N", reason), maxsplit=2)
        return f"{last.status}: {': '.join(parts[:2])[:90]}"


def local_example(name: str, *, patterns_only: bool = False) -> MeshSpec:
    """An example's ``local-model.yaml``; ``patterns_only`` turns structured routing off."""
    spec = load_mesh(EXAMPLES / name / "local-model.yaml")
    if not patterns_only:
        return spec
    tiers = {
        tier_name: tier.model_copy(update={"structured_output": None})
        for tier_name, tier in spec.models.items()
    }
    return spec.model_copy(update={"models": tiers})


async def run_tasks(
    mesh: Mesh,
    texts: Sequence[str],
    in_flight: int,
    timeout_s: float,
    window_s: float | None = None,
) -> list[Ended]:
    """Submit ``texts``, ``in_flight`` at a time; return how each trace ended, once all have.

    With ``window_s``, every task's time budget ends when the window does (``max_seconds``
    of what is left of it, at least one second), so the whole run takes about ``window_s``
    at most however slow the model is, while each task still has the model's one slot to
    itself and its fellows in flight. Raises ``choreo.client.ResultTimeout`` when a trace has
    no terminal record within ``timeout_s`` of its submission (the promise broken: every
    trace must end)."""
    gate = asyncio.Semaphore(in_flight)
    loop = asyncio.get_running_loop()
    end = None if window_s is None else loop.time() + window_s

    async def one(text: str) -> str:
        async with gate:
            budget = None if end is None else Budget(max_seconds=max(1.0, end - loop.time()))
            trace_id = await mesh.client.submit(text, budget=budget)
            await mesh.client.wait(trace_id, timeout_s)
            return trace_id

    trace_ids = await asyncio.gather(*(one(text) for text in texts))
    topics = mesh.topics
    return [
        Ended(
            trace_id,
            await mesh.client.read(topics.results, trace_id, TerminalResult),
            await mesh.client.hops(trace_id),
        )
        for trace_id in trace_ids
    ]


def tally(name: str, ended: Sequence[Ended]) -> str:
    """The endings of ``name``'s traces, counted by status and reason, as printable lines."""
    counts = Counter(e.outcome for e in ended)
    done = counts.get("completed", 0)
    lines = [f"{name}: {done} of {len(ended)} completed"]
    lines += [f"  {count:3d}  {outcome}" for outcome, count in counts.most_common()]
    return "\n".join(lines)


def _cycled(texts: Sequence[str], count: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(count)]


EXAMPLE_TASKS = {"writer-editor": BRIEFS, "support-desk": TICKETS}


async def _measure(tasks: int, in_flight: int, patterns_only: bool, names: list[str]) -> None:
    for name in names:
        texts = EXAMPLE_TASKS[name]
        spec = local_example(name, patterns_only=patterns_only)
        timeout_s = (spec.budgets.max_seconds or 300) + 60
        async with Mesh(spec, watchdog=True) as mesh:
            ended = await run_tasks(mesh, _cycled(texts, tasks), in_flight, timeout_s)
        doubled = [e.trace_id for e in ended if len(e.results) != 1]
        print(tally(name, ended))
        print(f"  traces without exactly one terminal record: {len(doubled)}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.real_model", description=__doc__)
    parser.add_argument("--tasks", type=int, default=6, help="tasks per example (default: 6)")
    parser.add_argument("--in-flight", type=int, default=2, help="tasks at once (default: 2)")
    parser.add_argument(
        "--patterns-only", action="store_true", help="route by patterns alone (the before)"
    )
    parser.add_argument(
        "--example",
        action="append",
        choices=sorted(EXAMPLE_TASKS),
        help="measure only this example (repeatable; default: both)",
    )
    args = parser.parse_args(argv)
    names = args.example or list(EXAMPLE_TASKS)
    asyncio.run(_measure(args.tasks, args.in_flight, args.patterns_only, names))


if __name__ == "__main__":
    main()
