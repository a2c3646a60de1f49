"""Where the running mesh is: its broker and topic prefix, from the environment or from the
``choreo up`` running in the current folder.

One set of rules for the CLI and the Python client (choreo.client.Client): an address or
prefix given explicitly (an argument, ``KAFKA_BOOTSTRAP_SERVERS``, ``CHOREO_TOPIC_PREFIX``) wins;
else those of the ``choreo up`` running from the current folder; else no broker (an error that
says how to get one) and the default prefix.

``choreo up`` writes ``.choreo/up.json`` (its pid, the broker's address, the mesh and the topic
prefix) while it runs and removes it when it stops, so the commands that work on a running mesh
find its broker and its topic prefix without an exported ``KAFKA_BOOTSTRAP_SERVERS`` or
``CHOREO_TOPIC_PREFIX``. A file whose process is gone (a ``choreo up`` killed with SIGKILL) is
ignored: its broker and services went with it (choreo.kafka.children). One folder runs one
mesh: ``choreo up`` calls ``claim`` first, which refuses while the announced one is alive and
removes an announcement whose process is gone. The pid is stored with its start time, so a
pid the system has since given to another process does not count as the mesh.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from choreo.observe.settings import Settings, get_settings
from choreo.schemas.errors import ChoreoError

#: Where ``choreo up`` announces itself, relative to the folder it runs in.
UP_FILE = Path(".choreo") / "up.json"


class MeshAlreadyUp(ChoreoError, RuntimeError):
    """A ``choreo up`` is already running from this folder; the message names its pid and mesh
    and how to stop it."""


def claim() -> str | None:
    """Make sure no live ``choreo up`` is announced in this folder, before one starts here.

    Returns a line to show when a stale announcement (its process gone) was removed, else
    None.

    Raises:
        MeshAlreadyUp: the announced ``choreo up`` is alive.
    """
    running = _read()
    if running is None:
        return None
    pid = running.get("pid")
    if _alive(pid, running.get("started")):
        raise MeshAlreadyUp(
            f"a `choreo up` already runs from this folder (pid {pid}, mesh "
            f"{running.get('mesh')}, broker {running.get('bootstrap')}): stop it with Ctrl-C "
            f"in its terminal or `kill {pid}`, or use another folder"
        )
    UP_FILE.unlink(missing_ok=True)
    return f"removed {UP_FILE} of a `choreo up` that is gone (pid {pid})"


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
                "started": started_at(os.getpid()),
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


class NoBrokerAddress(ChoreoError, ValueError):
    """No broker address is set and no ``choreo up`` runs from the current folder; the message
    says how to give one."""


def broker_of(settings: Settings) -> str:
    """The broker of the running mesh: ``settings.bootstrap_servers`` (``KAFKA_BOOTSTRAP_SERVERS``
    or ``CHOREO_BOOTSTRAP_SERVERS``) if set, else the broker of a ``choreo up`` running from the
    current folder.

    Whatever reads or writes a running mesh never starts a broker of its own: a new broker
    would hold none of the mesh's records.

    Raises:
        NoBrokerAddress: neither is there.
    """
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    if (found := running_broker()) is not None:
        return found
    raise NoBrokerAddress(
        "no broker address: set KAFKA_BOOTSTRAP_SERVERS to the broker the mesh "
        "runs on (`choreo up` and `choreo broker` print it), or run this command "
        f"in the folder of a running `choreo up` (it writes {UP_FILE})"
    )


def resolve(
    bootstrap: str | None = None,
    prefix: str | None = None,
    settings: Settings | None = None,
) -> tuple[str, Settings]:
    """The broker address and the settings (with their topic prefix) of the mesh to talk to.

    ``bootstrap`` and ``prefix`` count as if they were set in the environment; ``settings``
    defaults to the environment's (``get_settings``). Then the prefix follows a ``choreo up``
    in this folder (``follow``) and the broker is ``broker_of`` the result.

    Raises:
        NoBrokerAddress: no address given, set or announced.
        pydantic.ValidationError: (a ``ValueError``) ``prefix`` is not a valid topic prefix, or
            a ``CHOREO_*`` variable is bad.
    """
    base = settings if settings is not None else get_settings()
    given = {"bootstrap_servers": bootstrap, "topic_prefix": prefix}
    if overrides := {name: value for name, value in given.items() if value is not None}:
        base = Settings.model_validate({**base.model_dump(exclude_unset=True), **overrides})
    followed = follow(base)
    return broker_of(followed), followed


def running_broker() -> str | None:
    """The broker address of the ``choreo up`` running from this folder, or None."""
    return _running().get("bootstrap")


def running_mesh() -> str | None:
    """The mesh spec path of the ``choreo up`` running from this folder, or None."""
    return _running().get("mesh")


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
    if running is None or not _alive(running.get("pid"), running.get("started")):
        return {}
    return {k: v for k, v in running.items() if isinstance(v, str) and v}


def _read() -> dict[str, object] | None:
    try:
        found = json.loads(UP_FILE.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def started_at(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22);
    None where there is no ``/proc`` or no such process."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count from its end
    return stat.rpartition(")")[2].split()


def _alive(pid: object, started: object = None) -> bool:
    """True when ``pid`` runs (a zombie does not) and, if ``started`` is known, is the process
    that started then."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    fields = _stat(pid)
    if fields is None:  # no /proc: the signal's answer is all there is
        return True
    return fields[0] != "Z" and (not isinstance(started, int) or int(fields[19]) == started)
