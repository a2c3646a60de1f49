"""The code-fix mesh under ``choreo up``, as an operator meets it: every service, the watchdog
and the sandbox too, announces its metrics address as a Prometheus target file; and a halted
trace resumed with guidance ends differently, because the engineer reads ``guidance``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from choreo.kafka.broker import BrokerHandle
from choreo.spec.watchdog import app_id
from tests.conftest import EXAMPLES, wait_until
from tests.operator.support import Up, choreo_up, submitted_id

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None,
    reason="bubblewrap is not installed: the sandbox refuses to run code without isolation",
)

CODE_FIX = EXAMPLES / "code-fix" / "mesh.yaml"
TASK = (
    "[audit] Write slugify(title) in solution.py: lowercase words of letters and digits, "
    "joined by single hyphens, punctuation dropped."
)
GUIDANCE = "the auditor wants the word perfect in the docstring"
SERVICES = {"keeper", "agent:engineer", "agent:tester", "watchdog", "sandbox", "model-server"}


def _targets(folder: Path) -> dict[str, str]:
    """Service label -> scrape address, from the file_sd target files in ``folder``."""
    found = {}
    for path in folder.glob("*.json"):
        for entry in json.loads(path.read_text()):
            found[entry["labels"]["service"]] = entry["targets"][0]
    return found


@pytest.fixture(scope="module")
def targets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prometheus") / "targets"


@pytest.fixture(scope="module")
def up(
    broker: BrokerHandle, tmp_path_factory: pytest.TempPathFactory, targets_dir: Path
) -> Iterator[Up]:
    folder = tmp_path_factory.mktemp("code-fix-up")
    with choreo_up(
        CODE_FIX,
        folder,
        broker.bootstrap,
        f"cf{os.getpid()}",
        env={"CHOREO_METRICS_PORT": "0", "CHOREO_METRICS_TARGETS_DIR": str(targets_dir)},
    ) as running:
        yield running
    # every process removes its own target when it stops: Prometheus is left no dead target
    assert _targets(targets_dir) == {}


def test_every_service_announces_its_metrics_target(up: Up, targets_dir: Path) -> None:
    def announced() -> dict[str, str] | None:
        found = _targets(targets_dir)
        return found if set(found) >= SERVICES else None

    found = wait_until(announced, 60, message=f"target files of {sorted(SERVICES)}")
    for service in SERVICES:
        scraped = httpx.get(f"http://{found[service]}/metrics", timeout=10)
        assert scraped.status_code == 200, service
        assert "# TYPE" in scraped.text, service


def test_guidance_from_a_resumed_escalation_changes_the_outcome(up: Up) -> None:
    halted = up.choreo(
        "submit", str(CODE_FIX), TASK, "--max-hops", "4", "--wait", "--timeout", "240", timeout=300
    )
    assert halted.returncode == 1, halted.stdout + halted.stderr  # the audit loop never ends
    trace_id = submitted_id(halted.stdout)
    assert re.search(r"status\s+halted", halted.stdout), halted.stdout

    escalations = json.loads(up.choreo("escalations", "--json").stdout)
    escalation = next(e for e in escalations if e["trace_id"] == trace_id)
    resumed = up.choreo("escalations", "resolve", escalation["escalation_id"], "--resume", GUIDANCE)
    assert resumed.returncode == 0, resumed.stderr
    found = re.search(r"continuation trace (\S+)", resumed.stdout)
    assert found, resumed.stdout
    continuation = found.group(1)

    result = up.choreo("result", continuation, "--wait", "--timeout", "240", "--json", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "A perfect slug" in json.loads(result.stdout)["output"]  # the audit passed
    guidance = up.choreo("state", continuation, "--field", "guidance")
    assert guidance.stdout == GUIDANCE + "\n"
    # the model answered the guidance: its answer to the engineer names it
    hops = json.loads(up.choreo("trace", continuation, "--json").stdout)["hops"]
    assert hops[0]["agent"] == "engineer" and "Following the guidance" in hops[0]["output"]
    before = json.loads(up.choreo("trace", trace_id, "--json").stdout)["hops"]
    assert not any("perfect slug" in (hop["output"] or "") for hop in before)


def test_one_step_is_one_step(up: Up) -> None:
    done = up.choreo("submit", str(CODE_FIX), TASK, "--max-hops", "1", "--wait")
    assert done.returncode == 1, done.stdout + done.stderr  # halted before the tester
    assert "total: 1 step," in done.stdout and "1 steps" not in done.stdout
    assert "engineer 1 step " in done.stdout


async def _watchdog_joined(bootstrap: str, prefix: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([app_id(prefix)])
    finally:
        await admin.close()
    return any(entry[0] == 0 and entry[5] for r in responses for entry in r.groups)


def test_the_watchdog_logs_each_verdict_with_its_trace_and_reason(
    up: Up, broker: BrokerHandle
) -> None:
    wait_until(
        lambda: asyncio.run(_watchdog_joined(broker.bootstrap, up.prefix)),
        120,
        interval=1.0,
        message="the watchdog to join its group",
    )
    done = up.choreo("submit", str(CODE_FIX), TASK, "--wait", "--timeout", "300", timeout=360)
    trace_id = submitted_id(done.stdout)
    assert re.search(r"reason\s+loop\.", done.stdout), done.stdout  # the watchdog's halt
    text = (up.folder / ".choreo" / "logs" / "watchdog.log").read_text()
    assert "\x1b" not in text  # no terminal escape code in a log file
    verdicts = [
        entry
        for entry in map(json.loads, text.splitlines())
        if entry["msg"] == "verdict" and entry.get("trace_id") == trace_id
    ]
    assert verdicts and all(v["reason"].startswith("loop.") and v["action"] for v in verdicts)
    assert verdicts[-1]["action"] == "halt"
    # a persona shift is a version no step made: the tree names the versions it skips
    assert verdicts[:-1] and {v["action"] for v in verdicts[:-1]} == {"persona_shift"}
    shown = up.choreo("trace", trace_id).stdout
    assert "written by the keeper or unrecorded steps" in shown, shown
