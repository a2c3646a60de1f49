"""The scripted model server, run as a real process and spoken to over real HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from choreo.model_server import (
    SCRIPTED_HEADER,
    ScriptError,
    load_script,
    model_server,
    parse_script,
    start_model_server_process,
    stop_model_server_process,
)
from choreo.model_server.server import completion

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "writer-editor" / "model.yaml"

SCRIPT = {
    "model": "test-model",
    "rules": [
        {"when": {"system": "^You are the greeter", "user": "hello"}, "reply": "hi there, friend"},
        {"when": {"model": "^big-"}, "reply": "big model answer"},
    ],
}


def write_script(directory: Path, script: dict[str, Any], name: str = "model.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(script))
    return path


def chat(url: str, *messages: tuple[str, str], model: str = "small") -> httpx.Response:
    body = {"model": model, "messages": [{"role": r, "content": c} for r, c in messages]}
    return httpx.post(f"{url}/chat/completions", json=body, timeout=10)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with model_server(write_script(tmp_path_factory.mktemp("script"), SCRIPT)) as base_url:
        yield base_url


def test_first_matching_rule_answers_with_usage_and_scripted_labels(url: str) -> None:
    response = chat(url, ("system", "You are the greeter."), ("user", "well hello  you"))
    assert response.status_code == 200
    assert response.headers[SCRIPTED_HEADER] == "true"
    body = response.json()
    assert body["model"] == "scripted:test-model"
    assert body["system_fingerprint"] == "choreo-scripted"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi there, friend"}
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_rules_can_match_the_requested_model(url: str) -> None:
    response = chat(url, ("system", "You are the greeter."), ("user", "bye"), model="big-one")
    assert response.json()["choices"][0]["message"]["content"] == "big model answer"


def test_no_matching_rule_says_so_plainly(url: str) -> None:
    response = chat(url, ("system", "You are someone else."), ("user", "hello"))
    assert response.status_code == 200
    reply = response.json()["choices"][0]["message"]["content"]
    assert "no scripted rule matched" in reply
    assert "scripted:test-model" in reply


def test_models_and_health_endpoints(url: str) -> None:
    models = httpx.get(f"{url}/models").json()
    assert [m["id"] for m in models["data"]] == ["scripted:test-model"]
    health = httpx.get(url.removesuffix("/v1") + "/healthz")
    assert health.status_code == 200
    assert health.json()["scripted"] is True


def test_malformed_request_is_a_400(url: str) -> None:
    response = httpx.post(f"{url}/chat/completions", content=b"not json", timeout=10)
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]["message"]
    response = httpx.post(f"{url}/chat/completions", json={"messages": []}, timeout=10)
    assert response.status_code == 400


def test_rate_limit_fault_answers_every_nth_request_with_retry_after(tmp_path: Path) -> None:
    script = {**SCRIPT, "faults": {"rate_limit": {"every": 3, "retry_after": 0.05}}}
    with model_server(write_script(tmp_path, script)) as base_url:
        statuses = [chat(base_url, ("user", "hello")) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200, 200, 429, 200, 200, 429]
    assert statuses[2].headers["Retry-After"] == "0.05"
    assert statuses[2].headers[SCRIPTED_HEADER] == "true"


def test_down_fault_answers_503_to_everything(tmp_path: Path) -> None:
    with model_server(write_script(tmp_path, {**SCRIPT, "faults": {"down": True}})) as base_url:
        assert chat(base_url, ("user", "hello")).status_code == 503
        assert httpx.get(f"{base_url}/models").status_code == 503
        assert httpx.get(base_url.removesuffix("/v1") + "/healthz").status_code == 503


def test_faults_are_switched_while_the_server_runs(tmp_path: Path) -> None:
    with model_server(write_script(tmp_path, SCRIPT)) as base_url:
        assert chat(base_url, ("user", "hello")).status_code == 200
        down = httpx.put(f"{base_url}/faults", json={"down": True}, timeout=10)
        assert (down.status_code, down.json()["down"]) == (200, True)
        assert chat(base_url, ("user", "hello")).status_code == 503
        assert httpx.put(f"{base_url}/faults", json={"dwn": True}, timeout=10).status_code == 400
        httpx.put(f"{base_url}/faults", json={}, timeout=10).raise_for_status()
        assert chat(base_url, ("user", "hello")).status_code == 200


def test_a_rule_breaks_its_answer_as_it_says(tmp_path: Path) -> None:
    rules = [
        {"when": {"user": "error"}, "reply": "x", "fault": "server_error"},
        {"when": {"user": "null"}, "reply": "two words", "fault": "null_content"},
        {"when": {"user": "lie"}, "reply": "plain", "fault": "gzip_lie"},
    ]
    with model_server(write_script(tmp_path, {**SCRIPT, "rules": rules})) as base_url:
        assert chat(base_url, ("user", "error")).status_code == 500
        null = chat(base_url, ("user", "null")).json()
        assert null["choices"][0]["message"]["content"] is None
        assert null["usage"]["completion_tokens"] == 2
        with pytest.raises(httpx.DecodingError):
            chat(base_url, ("user", "lie"))
        stats = httpx.get(f"{base_url}/stats", timeout=10).json()
        assert (stats["server_error"], stats["completions"]) == (1, 2)


@pytest.mark.parametrize(
    ("script", "field"),
    [
        ({**SCRIPT, "rules": [{"when": {"user": "(unclosed"}, "reply": "x"}]}, "rules.0.when.user"),
        ({**SCRIPT, "faults": {"rate_limit": {"evry": 2}}}, "faults.rate_limit.evry"),
        ({**SCRIPT, "latency_ms": -1}, "latency_ms"),
        ({"rules": []}, "model"),
    ],
)
def test_bad_script_is_rejected_naming_the_field(script: dict[str, Any], field: str) -> None:
    with pytest.raises(ScriptError, match=rf"\b{field}:"):
        parse_script(script)


def test_bad_script_stops_the_process_before_it_listens(tmp_path: Path) -> None:
    path = write_script(tmp_path, {**SCRIPT, "rules": [{"when": {"system": "["}, "reply": "x"}]})
    with pytest.raises(RuntimeError, match=r"rules\.0\.when\.system: not a regular expression"):
        start_model_server_process(path)
    with pytest.raises(ScriptError, match="no such model script"):
        load_script(tmp_path / "missing.yaml")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_server_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    proc, base_url = start_model_server_process(write_script(tmp_path, SCRIPT))
    try:
        assert chat(base_url, ("user", "hello")).status_code == 200
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
    finally:
        stop_model_server_process(proc)


def test_cli_entry_point_rejects_a_bad_script_with_exit_2(tmp_path: Path) -> None:
    path = write_script(tmp_path, {"model": "m", "rules": "not a list"})
    done = subprocess.run(
        [sys.executable, "-m", "choreo.model_server", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "rules:" in done.stderr
    assert done.stdout == ""


def test_writer_editor_script_asks_for_two_revisions() -> None:
    """Walk the example's conversation: the editor approves only the third draft."""
    writer, editor = "You are the writer. Write short pieces.", "You are the editor. Review."
    task = "## input\nWrite a short piece on event-driven systems."
    draft: str | None = None
    verdicts: list[str] = []
    with model_server(EXAMPLE) as base_url:
        for _ in range(3):
            review = f"\n\n## review\n{verdicts[-1]}" if verdicts else ""
            user = task + (f"\n\n## draft\n{draft}" if draft else "") + review
            draft = _reply(chat(base_url, ("system", writer), ("user", user)))
            verdicts.append(
                _reply(chat(base_url, ("system", editor), ("user", f"{task}\n\n## draft\n{draft}")))
            )
    assert draft is not None and "[draft 3]" in draft
    assert [v.split()[0] for v in verdicts] == ["REVISE:", "REVISE:", "APPROVED."]


def _reply(response: httpx.Response) -> str:
    assert response.status_code == 200
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


def test_tool_call_arguments_go_out_in_the_order_the_script_writes_them() -> None:
    """A model writes a call's arguments in any order; the scripted one can too."""
    script = parse_script(
        {
            "model": "m",
            "rules": [
                {
                    "tool_calls": [
                        {"name": "stock", "arguments": {"warehouse": "north", "sku": "A-1"}}
                    ]
                }
            ],
        }
    )
    body = b'{"messages": [{"role": "user", "content": "x"}]}'
    response = completion(script, script.rules[0], body, [("user", "x")])
    (call,) = response["choices"][0]["message"]["tool_calls"]
    assert call["function"]["arguments"] == '{"warehouse": "north", "sku": "A-1"}'
