"""The broker of a ``choreo up`` running from the current folder.

``choreo up`` writes ``.choreo/up.json`` (its pid, the broker's address, the mesh and the topic
prefix) while it runs and removes it when it stops, so the commands that work on a running mesh
find its broker and its topic prefix without an exported ``KAFKA_BOOTSTRAP_SERVERS`` or
``CHOREO_TOPIC_PREFIX``. A file whose process is gone (a ``choreo up`` killed with SIGKILL) is
ignored: its broker went with it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from choreo.observe.settings import Settings

#: Where ``choreo up`` announces itself, relative to the folder it runs in.
UP_FILE = Path(".choreo") / "up.json"


@contextlib.contextmanager
def announce(bootstrap: str, mesh: Path, topic_prefix: str) -> Iterator[Path]:
    """Write ``UP_FILE`` for the life of the block; remove it after, unless a later
    ``choreo up`` in the same folder has replaced it with its own."""
    UP_FILE.parent.mkdir(parents=True, exist_ok=True)
    staging = UP_FILE.with_name(f".up-{os.getpid()}.tmp")  # readers never see half a file
    staging.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "bootstrap": bootstrap,
                "mesh": str(mesh.resolve()),
                "topic_prefix": topic_prefix,
            }
        )
    )
    staging.replace(UP_FILE)
    try:
        yield UP_FILE
    finally:
        if (running := _read()) is not None and running.get("pid") == os.getpid():
            UP_FILE.unlink(missing_ok=True)


def running_broker() -> str | None:
    """The broker address of the ``choreo up`` running from this folder, or None."""
    return _running().get("bootstrap")


def follow(settings: Settings) -> Settings:
    """``settings`` with the topic prefix of the ``choreo up`` running from this folder, when
    no prefix is set and the command works on that up's broker (no broker address is set, or
    the one set is the up's); otherwise ``settings`` unchanged. An explicit
    ``CHOREO_TOPIC_PREFIX`` always wins, and an announced prefix that is not a valid one is
    not followed."""
    if "topic_prefix" in settings.model_fields_set:
        return settings
    running = _running()  # one read: prefix and broker from the same announcement
    prefix = running.get("topic_prefix")
    if prefix is None or settings.bootstrap_servers not in (None, "", running.get("bootstrap")):
        return settings
    try:  # validated again: the file is outside this process
        return Settings.model_validate(
            {**settings.model_dump(exclude_unset=True), "topic_prefix": prefix}
        )
    except ValidationError:
        return settings


def _running() -> dict[str, str]:
    """The non-empty text fields of the live ``choreo up``'s announcement (none without one)."""
    running = _read()
    if running is None or not _alive(running.get("pid")):
        return {}
    return {k: v for k, v in running.items() if isinstance(v, str) and v}


def _read() -> dict[str, object] | None:
    try:
        found = json.loads(UP_FILE.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
