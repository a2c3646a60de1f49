"""``choreo --help`` imports only what it prints: the parsers, never Kafka, HTTP, metrics,
tracing or the engine, so asking for help costs no more than reading it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: What no help screen needs: each name is a package, its submodules included.
HEAVY = (
    "aiokafka",
    "faust",
    "httpx",
    "prometheus_client",
    "opentelemetry",
    "choreo.kafka",
    "choreo.models",
)

#: Runs ``main(ARGV)`` in a fresh interpreter; prints what it showed and every module loaded.
RUNNER = """
import contextlib, io, json, sys
from choreo.cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as shown, contextlib.suppress(SystemExit):
    main(json.loads(sys.argv[1]))
print(json.dumps({"help": shown.getvalue(), "modules": sorted(sys.modules)}))
"""


@pytest.mark.parametrize(
    "argv", [["--help"], ["submit", "--help"], ["state", "--help"], ["bench", "hop", "--help"]]
)
def test_help_loads_no_kafka_http_metrics_tracing_or_engine(
    argv: list[str], tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-P", "-c", RUNNER, json.dumps(argv)],
        cwd=tmp_path,  # no checkout folder on the path: the installed package alone
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["help"].startswith("usage: choreo")
    loaded = [m for m in shown["modules"] if any(m == h or m.startswith(f"{h}.") for h in HEAVY)]
    assert loaded == []
