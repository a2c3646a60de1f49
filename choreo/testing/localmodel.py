"""A tier's llama.cpp server for a test mesh: the same process ``choreo up`` starts.

A real model runs in its own process even in a test: its native threads would otherwise
compete with the mesh's event loop for the interpreter, and a crash of llama.cpp would take
the test run down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess

from choreo.kafka.service import Service
from choreo.local.launch import LOCAL_MODEL_START_S
from choreo.local.processes import CHOREO_CLI
from choreo.model_server.llama import server_args, wait_healthy
from choreo.model_server.process import start_announcing, stop_model_server_process
from choreo.spec.mesh import ModelTier


class LocalModel(Service):
    """``tier``'s llama.cpp server as a service (choreo.kafka.service.Service): entering
    starts ``choreo local-model`` and returns once it lists the tier's model at ``url``
    (``http://127.0.0.1:PORT/v1``); leaving stops the process (SIGTERM, then SIGKILL).

    Entering raises ``RuntimeError`` with the server's stderr when it does not start, or
    when it does not list the tier's model."""

    def __init__(self, tier: ModelTier) -> None:
        if tier.server is None:
            raise ValueError("LocalModel serves a tier with a server")
        self.tier = tier
        self.url = ""

    async def _acquire(self, stack: contextlib.AsyncExitStack) -> None:
        assert self.tier.server is not None
        argv = [*CHOREO_CLI, *server_args(self.tier.model, self.tier.server)]
        what = f"llama.cpp server for {self.tier.model}"
        proc: subprocess.Popen[str]
        proc, self.url = await asyncio.to_thread(
            start_announcing, argv, what, None, LOCAL_MODEL_START_S
        )
        stack.push_async_callback(asyncio.to_thread, stop_model_server_process, proc)
        await asyncio.to_thread(wait_healthy, self.url, self.tier.model)

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()  # the process serves on its own
