"""A Python tool declared ``isolation: process``: each call runs in a child process, killed
at the call's timeout.

A thread cannot be stopped (choreo.tools.threads), a process can: a tool that may hang for
real (a blocking read in C, a driver without timeouts), or crash the interpreter, runs here.
The price is a fresh interpreter per call (its imports: a few hundred milliseconds). The call
goes to ``python -m choreo.tools.isolated`` as JSON on stdin (the import path, the folders to
import from, the model's arguments) and comes back as JSON on stdout: the result text, or the
error's ``Type: message`` and traceback. Whatever the child does, raises or dies of, the
caller gets a result or a ``ToolFailure``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from choreo.kafka.children import lifeline_argv
from choreo.schemas.errors import ToolError
from choreo.tools import imports
from choreo.tools.base import ToolFailure
from choreo.tools.boundary import describe
from choreo.tools.function import FunctionTool, as_result_text

log = logging.getLogger(__name__)


class ProcessTool:
    """One function tool whose calls each run in a child process (same schema, name and
    timeout as the ``FunctionTool`` it wraps)."""

    def __init__(self, path: str, tool: FunctionTool, python_path: Sequence[Path] = ()) -> None:
        self.path = path
        self.tool = tool
        self.python_path = [str(p) for p in python_path]
        self.name = tool.name
        self.description = tool.description
        self.parameters = tool.parameters
        self.server: str | None = "process"
        self.timeout_s = tool.timeout_s

    async def call(self, arguments: dict[str, Any]) -> str:
        self.tool.schema.validate(arguments)  # bad arguments fail here, not in a new process
        request = json.dumps(
            {"function": self.path, "python_path": self.python_path, "arguments": arguments}
        ).encode()
        # behind the parent-death wrapper: a hung call dies with an agent killed by SIGKILL
        child = await asyncio.create_subprocess_exec(
            *lifeline_argv([sys.executable, "-m", "choreo.tools.isolated"]),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await child.communicate(request)
        finally:  # cancelled (the call's timeout, the step's end): the child goes too
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
        return _answer(self.name, child.returncode or 0, out, err)


def _answer(name: str, code: int, out: bytes, err: bytes) -> str:
    """The call's result from what the child printed (its last line: the tool may print
    too), or the failure: its error, or how its process ended."""
    try:
        answer = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        if code < 0:
            why = f"killed by {signal.Signals(-code).name}"
        else:
            why = f"exited with status {code}"
        last = err.decode(errors="replace").strip().splitlines()[-1:]
        raise ToolFailure(
            "error", f"{name}: its process {why}" + (f": {last[0]}" if last else "")
        ) from None
    if "error" in answer:
        if answer.get("traceback"):
            log.warning("tool raised", extra={"tool": name, "traceback": answer["traceback"]})
        raise ToolFailure("error", str(answer["error"]))
    return str(answer["result"])


def _run(request: dict[str, Any]) -> dict[str, Any]:
    """The child's side: import, validate, call; never raises."""
    try:
        imports.add_to_path(Path(p) for p in request["python_path"])
        tool = FunctionTool(imports.resolve(request["function"]))
        kwargs = tool.schema.validate(request["arguments"])
        value = tool.func(**kwargs)
        if asyncio.iscoroutine(value):
            value = asyncio.run(value)
        return {"result": as_result_text(value)}
    except ToolError as exc:  # the tool's own answer to the model
        return {"error": str(exc)}
    except BaseException as exc:  # whatever it is, the parent is told
        return {"error": describe(exc), "traceback": "".join(traceback.format_exception(exc))}


if __name__ == "__main__":
    answer = _run(json.loads(sys.stdin.buffer.read()))
    print(json.dumps(answer))
