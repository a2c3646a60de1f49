"""Percentiles and the benchmark report file, shared by every ``choreo bench`` command."""

from __future__ import annotations

import math
import os
import platform
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def of(cls, samples: list[float]) -> Summary:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)

        def rank(q: float) -> float:  # nearest-rank percentile
            return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

        return cls(len(ordered), rank(0.50), rank(0.90), rank(0.99), sum(ordered) / len(ordered))


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}"
    )


def write_section(path: Path, title: str, body: str) -> None:
    """Replace (or append) the ``## title`` section of the benchmarks file."""
    text = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nEvery figure here was "
        "produced by the command shown with it; rerun it to refresh the section.\n"
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    section = f"## {title}\n\n_Measured {stamp} on {machine()}._\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(lambda _: section + "\n", text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + section
    )
    path.write_text(text.rstrip() + "\n")


def publish(title: str, out: str | Path | None, body: str) -> None:
    """Print a report section, then write it as the ``## title`` section of ``out`` if given:
    the figures are on stdout before any file can fail."""
    print(body, flush=True)
    if out is not None:
        write_section(Path(out), title, body)
