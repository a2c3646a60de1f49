"""The sandbox API's JSON bodies, shared by the service and its client."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

Status = Literal["ok", "error", "timeout", "killed", "refused"]

# A file name inside the run's /tmp: relative, plain components, no way up or out.
_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
MAIN_SCRIPT = "main.py"


class RunRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /run``: code to run and what it may read."""

    code: str
    language: Literal["python"] = "python"
    stdin: str = ""
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    files: dict[str, str] = {}


class SandboxResult(msgspec.Struct, omit_defaults=False):
    """The outcome of one run.

    ``status``: ``ok`` (exit 0), ``error`` (non-zero exit), ``timeout`` (wall clock; the whole
    sandbox was killed), ``killed`` (a signal, e.g. the CPU or file-size limit), ``refused``
    (isolation unavailable or the sandbox could not be set up; nothing ran). ``reason`` says
    why for every status but ``ok``/``error``.
    """

    status: Status
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: int = 0
    signal: int | None = None
    reason: str | None = None


def check_file_name(name: str) -> str | None:
    """Why ``name`` may not be a run's file, or None when it may."""
    parts = name.split("/")
    if name == MAIN_SCRIPT:
        return f"{MAIN_SCRIPT!r} is reserved for the code itself"
    if len(parts) > 8 or not all(_COMPONENT.match(part) for part in parts):
        return f"bad file name {name!r}: use a relative path of plain names"
    return None
