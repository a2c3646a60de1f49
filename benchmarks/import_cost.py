"""Import cost: what a Python statement loads, and what a command costs in CPU.

    python -m benchmarks.import_cost --python .venv/bin/python "import choreo"
    python -m benchmarks.import_cost --command .venv/bin/choreo --help

A statement runs in a fresh interpreter (``-P``, in a temporary folder, so only installed
packages are importable) ``--runs`` times after one untimed run that writes the bytecode
caches. For each run: the modules the statement adds to ``sys.modules``, and its import time,
the sum of the cumulative microseconds ``python -X importtime`` reports for the top-level
imports the statement makes (the interpreter's own start-up imports left out). A command
runs the same way and is measured by its CPU time, user plus system, in seconds. Prints the
median of the runs and every run's figure.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile

#: Written to stderr just before the statement, to tell its imports from start-up's.
MARK = "-- statement --"


def modules_added(python: str, statement: str, cwd: str) -> int:
    program = (
        f"import sys; before = set(sys.modules)\n{statement}\nprint(len(sys.modules) - len(before))"
    )
    done = subprocess.run(
        [python, "-P", "-c", program], cwd=cwd, capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def import_time_us(python: str, statement: str, cwd: str) -> int:
    """The statement's top-level imports' cumulative time, from ``-X importtime``."""
    program = f"import sys; sys.stderr.write({MARK!r} + '\\n')\n{statement}"
    done = subprocess.run(
        [python, "-P", "-X", "importtime", "-c", program],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stderr.splitlines()
    total = 0
    for line in lines[lines.index(MARK) + 1 :]:
        # "import time: <self> | <cumulative> | <indent><name>"; top level: one space
        fields = line.split("|")
        top = len(fields) == 3 and not fields[2].startswith("  ")
        if line.startswith("import time:") and top and fields[1].strip().isdigit():
            total += int(fields[1])
    return total


def cpu_s(argv: list[str], cwd: str) -> float:
    """User plus system CPU seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, cwd=cwd, capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("statement", nargs="?", default="import choreo")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to measure")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--command", nargs=argparse.REMAINDER, default=[], help="measure this command's CPU"
    )
    args = parser.parse_args(argv)
    # the runs start in a temporary folder: a relative path given here must still name it
    python = os.path.abspath(args.python) if os.sep in args.python else args.python
    command = [os.path.abspath(c) if os.sep in c else c for c in args.command[:1]]
    command += args.command[1:]
    with tempfile.TemporaryDirectory() as cwd:
        if command:
            subprocess.run(command, cwd=cwd, capture_output=True, check=True)
            runs = [cpu_s(command, cwd) for _ in range(args.runs)]
            print(f"{' '.join(args.command)}: CPU {statistics.median(runs):.2f} s (median)")
            print(f"runs, s: {', '.join(f'{r:.2f}' for r in runs)}")
            return 0
        modules_added(python, args.statement, cwd)  # writes the bytecode caches
        counts = [modules_added(python, args.statement, cwd) for _ in range(args.runs)]
        times = [import_time_us(python, args.statement, cwd) for _ in range(args.runs)]
    print(
        f"{args.statement}: {statistics.median(counts):.0f} modules, "
        f"{statistics.median(times) / 1000:.0f} ms (median of {args.runs})"
    )
    print(f"runs: modules {counts}; ms {[round(t / 1000) for t in times]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
