"""A real model on this machine: llama-cpp-python's OpenAI-compatible server as a child process.

``choreo local-model`` (what ``choreo up`` and ``choreo.testing`` start for a tier with a
``server``, choreo.spec.localmodel) loads the GGUF file, binds its port, and only then prints
``listening on URL`` on stdout, the same start-up line as the scripted server's; its parent then
asks ``GET /v1/models`` once before any agent calls it. The server itself is llama-cpp-python's
(``llama_cpp.server``): FastAPI under uvicorn, given a socket bound here so port 0 works and the
address announced is the one bound.
"""

from __future__ import annotations

import socket
import time

import httpx

from choreo.model_server.process import ANNOUNCEMENT
from choreo.spec.localmodel import LocalServer, model_file


def server_args(model: str, server: LocalServer, *, port: int = 0) -> list[str]:
    """The ``choreo local-model`` arguments that serve ``server`` under the name ``model``."""
    args = ["local-model", "--model", model, "--port", str(port)]
    args += ["--threads", str(server.threads), "--context", str(server.context)]
    if server.gguf is not None:
        args += ["--gguf", str(server.gguf)]
    if server.chat_format is not None:
        args += ["--chat-format", server.chat_format]
    return args


def serve_llama(
    model: str,
    server: LocalServer,
    host: str = "127.0.0.1",
    port: int = 0,
) -> None:
    """Load ``server``'s GGUF file, answer as ``model`` on ``host:port`` until SIGTERM/SIGINT.

    Prints ``listening on http://HOST:PORT/v1`` once the model is loaded and the port bound.
    Raises ``ImportError`` without the local-model extra, ``LookupError`` without the packaged
    model, ``OSError`` when the port cannot be bound, ``ValueError`` for a file llama.cpp cannot
    load.
    """
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    path = model_file(server)
    settings = ModelSettings(
        model=str(path),
        model_alias=model,
        n_threads=server.threads,
        n_threads_batch=server.threads,
        n_ctx=server.context,
        chat_format=server.chat_format,
        verbose=False,
    )
    # Every field given: both settings classes also read same-named environment variables
    # (API_KEY would make the server demand a key no client of the mesh sends).
    app = create_app(
        server_settings=ServerSettings(host=host, port=port, api_key=None),
        model_settings=[settings],
    )
    listener = socket.create_server((host, port))
    url = f"http://{host}:{listener.getsockname()[1]}/v1"
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    print(f"{ANNOUNCEMENT}{url}", flush=True)  # bound and loaded: connections queue meanwhile
    uvicorn.Server(config).run(sockets=[listener])


def wait_healthy(url: str, model: str, timeout_s: float = 30.0) -> None:
    """Return once ``GET url/models`` lists ``model``; ``RuntimeError`` past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/models", timeout=max(0.1, deadline - time.monotonic()))
            names = [entry.get("id") for entry in response.json().get("data", [])]
            if response.status_code == 200 and model in names:
                return
            problem = f"HTTP {response.status_code}, models {names}"
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)  # polling a server that said it is up, with a deadline
    raise RuntimeError(f"the model server at {url} is not healthy: {problem}")
