"""After a healthy run every service's log says what happened: one JSON object per line, the
trace id on each line about a trace, and no terminal escape codes."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.conftest import EXAMPLES, ProcessMesh


def test_services_log_lifecycle_as_json_lines_with_trace_ids(
    start_test_mesh_processes: Callable[..., ProcessMesh],
) -> None:
    mesh = start_test_mesh_processes(EXAMPLES / "writer-editor" / "mesh.yaml", watchdog=True)
    trace_id = mesh.submit("a task to log")
    assert mesh.result(trace_id, timeout=150).status == "completed"
    mesh.stop()

    entries: dict[str, list[dict[str, object]]] = {}
    for child in mesh.group.children:
        if child.name.startswith("model-"):
            continue  # the scripted model stands in for a model provider: not a service
        text = child.log_path.read_text()
        assert "\x1b" not in text, child.name  # a log file never drives a terminal
        lines = [line for line in text.splitlines() if line.strip()]
        entries[child.name] = [json.loads(line) for line in lines]  # every line is JSON
    for name, service in (
        ("keeper", "keeper"),
        ("writer-1", "agent:writer"),
        ("editor-1", "agent:editor"),
        ("watchdog", "watchdog"),
    ):
        assert entries[name], f"{name} logged nothing"
        assert {e["service"] for e in entries[name]} == {service}, entries[name]
        # Quiet by default: none of the clients' routine chatter (each fetch, group join,
        # request). Their warnings stay: a broker still electing its coordinators is worth a
        # line, and a fresh broker may well be doing so during this run.
        chatter = [
            e
            for e in entries[name]
            if e["logger"].startswith(("aiokafka", "httpx"))
            and e["level"] not in ("warning", "error", "critical")
        ]
        assert not chatter, chatter
    about_trace = [e for e in entries["keeper"] if e.get("trace_id") == trace_id]
    assert [e["msg"] for e in about_trace] == ["trace admitted", "trace ended"]
    assert about_trace[1]["status"] == "completed"
