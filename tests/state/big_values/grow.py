"""The grower of big_values/mesh.yaml: one line of :data:`WIDTH` bytes a step, :data:`LINES`
lines, then the review."""

from __future__ import annotations

from choreo.agent.sdk import Result, Step

LINES = 24
WIDTH = 50_000  # under the blob threshold (64 KiB) a line: each step's delta holds its line


def line(n: int) -> str:
    """Line ``n``: numbered, the last one marked, padded to WIDTH bytes."""
    head = f"line {n} of {LINES}: " + ("END " if n == LINES else "")
    return head + "x" * (WIDTH - len(head))


async def grow(step: Step) -> Result:
    n = int(step.state.get("n") or 0) + 1
    writes = {"log": line(n), "n": 1}
    return step.emit("review.requested" if n == LINES else "grow.next", writes)
