"""A sandbox run as text a model or a route can read, and code taken out of model output."""

from __future__ import annotations

import re
from typing import Any

_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
#: Characters of stdout and of stderr kept in the transcript: enough for a traceback.
TRANSCRIPT_CHARS = 2000


def code_blocks(text: str) -> list[str]:
    """The fenced code blocks of a text, in order."""
    return [block.strip("\n") for block in _BLOCK.findall(text)]


def as_code(value: Any) -> str:
    """A state field as a file: its code blocks when it has some, else its text."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return "\n\n".join(code_blocks(text)) or text


def transcript(
    status: str, reason: str | None, exit_code: int | None, stdout: str, stderr: str
) -> str:
    """A sandbox run as text: ``[sandbox: ok, exit 0]``, the reason, then each stream's
    last ``TRANSCRIPT_CHARS``."""
    head = f"[sandbox: {status}" + (f", exit {exit_code}" if exit_code is not None else "")
    lines = [head + "]"]
    if reason and status != "error":
        lines.append(reason)
    for name, stream in (("stdout", stdout), ("stderr", stderr)):
        if stream:
            lines.append(f"--- {name}\n{stream[-TRANSCRIPT_CHARS:].rstrip()}")
    return "\n".join(lines)
