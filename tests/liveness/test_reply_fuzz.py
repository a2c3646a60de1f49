"""Whatever a model server answers, a call ends as a Completion whose text encodes, or as a
ModelError with a bounded reason: a real HTTP server in the test sends answers hypothesis
breaks at random (status, headers, body, JSON shape, text), over real sockets."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from choreo.models.client import ModelClient, ModelError
from choreo.schemas import Usage
from choreo.spec.mesh import ModelTier
from choreo.tools.record import canonical_arguments

REASONS = re.compile(
    r"^(rate_limited|timeout|deadline|connection|protocol|bad_response|circuit_open|http_\d{3})$"
)


class Answer:
    """The next answer of the server: status, headers and body bytes."""

    status = 200
    headers: dict[str, str] = {}  # replaced whole, never mutated
    body = b""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(Answer.status)
        for name, value in Answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(Answer.body)))
        self.end_headers()
        self.wfile.write(Answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


any_text = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates included
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
usage = st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens": json_value | st.integers(-5, 10**6),
        "completion_tokens": json_value | st.integers(-5, 10**6),
    },
)
#: Arguments as models send them: any text, JSON with lone surrogates escaped, or nested past
#: the parser's recursion limit.
arguments = (
    any_text
    | json_value.map(json.dumps)
    | st.integers(10, 100_000).map(lambda depth: "[" * depth + "]" * depth)
)
tool_call = st.fixed_dictionaries(
    {
        "id": any_text,
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": any_text, "arguments": arguments}),
    }
)
message = st.fixed_dictionaries(
    {"role": st.just("assistant")},
    optional={"content": any_text | json_value, "tool_calls": st.lists(tool_call, max_size=2)},
)
completion = st.fixed_dictionaries(
    {},
    optional={
        "choices": st.lists(st.fixed_dictionaries({}, optional={"message": message}), max_size=2)
        | json_value,
        "usage": usage | json_value,
        "model": any_text | json_value,
    },
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A chat completion broken at random, or anything else."""
    kind = draw(st.sampled_from(["completion", "json", "bytes", "cut", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":  # valid JSON nested past the parser's recursion limit
        depth = draw(st.integers(10, 100_000))
        return b'{"choices": ' + b"[" * depth + b"]" * depth + b"}"
    value = draw(completion) if kind != "json" else draw(json_value)
    data = json.dumps(value).encode()  # escapes surrogates as \udxxx, alone
    if kind == "cut":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    return data


headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity", "nonsense"]),
        "Content-Type": st.sampled_from(["application/json", "text/html", "x/y; charset=ebcdic"]),
        "Retry-After": st.sampled_from(["0", "-1", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"]),
    },
)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    status=st.sampled_from([200, 200, 200, 201, 400, 404, 429, 500, 503]),
    headers=headers,
    body=bodies(),
)
def test_any_answer_is_a_completion_that_encodes_or_a_model_error(
    url: str, status: int, headers: dict[str, str], body: bytes
) -> None:
    Answer.status, Answer.headers, Answer.body = status, headers, body
    tier = ModelTier(
        model="fuzzed",
        base_url=url,
        max_retries=0,
        timeout_s=5,
        circuit_failures=10**6,
        on_outage="fail",
        price_in_per_mtok=1.0,
    )

    async def call() -> Any:
        async with ModelClient.for_tier("fuzzed", tier, environ={}) as client:
            return await client.complete(
                [{"role": "user", "content": "hi \ud83d"}], agent="fuzzer", deadline=None
            )

    try:
        result = asyncio.run(call())
    except ModelError as exc:
        assert REASONS.match(exc.reason), exc.reason
        spent: Usage = exc.usage
        str(exc).encode("utf-8")
    else:
        assert 200 <= status < 300
        result.text.encode("utf-8")
        for call in result.tool_calls:  # what the tool loop does with each: never raises
            canonical_arguments(call.arguments)[1].encode("utf-8")
            (call.id + call.name).encode("utf-8")
        spent = result.usage
    assert spent.tokens_in >= 0 and spent.tokens_out >= 0 and spent.cost >= 0
    spent.model.encode("utf-8")


@pytest.mark.parametrize(
    "reported",
    [
        {"prompt_tokens": "12", "completion_tokens": 7},
        {"prompt_tokens": 12, "completion_tokens": -3},
        {"prompt_tokens": None, "completion_tokens": [7]},
        {"prompt_tokens": True, "completion_tokens": 2.5},
    ],
)
def test_a_token_count_that_is_not_one_is_estimated(url: str, reported: dict[str, Any]) -> None:
    """A garbled count must still count against the budgets: the side that is not a
    non-negative integer is estimated (never 0), and the usage says it was."""
    Answer.status, Answer.headers = 200, {}
    Answer.body = json.dumps(
        {
            "choices": [{"message": {"role": "assistant", "content": "four words of answer"}}],
            "usage": reported,
        }
    ).encode()
    tier = ModelTier(
        model="garbled",
        base_url=url,
        max_retries=0,
        timeout_s=5,
        price_in_per_mtok=1.0,
        price_out_per_mtok=1.0,
    )

    async def call() -> Any:
        async with ModelClient.for_tier("garbled", tier, environ={}) as client:
            return await client.complete(
                [{"role": "user", "content": "count me"}], agent="fuzzer", deadline=None
            )

    usage = asyncio.run(call()).usage
    assert usage.estimated
    assert usage.tokens_in > 0 and usage.tokens_out > 0 and usage.cost > 0
    valid = {k: v for k, v in reported.items() if type(v) is int and v >= 0}
    assert all(
        getattr(usage, {"prompt_tokens": "tokens_in", "completion_tokens": "tokens_out"}[k]) == v
        for k, v in valid.items()
    )
