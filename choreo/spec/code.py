"""The user code a mesh spec names, checked before anything starts: every handler and tool
import path imports, every MCP server command exists.

Names alone (choreo.spec.check) cannot tell that ``handlers:triage`` is a typo for
``handlers:triage_ticket``; found only when the agent starts, such a mistake shows as a
service that exits and is restarted over and over. Here each path is imported as the agent
would import it (the mesh's folder and ``python_path`` on ``sys.path``), so the mistake is
reported where it was made, with a "did you mean" from what the module or folder holds, and
an error raised while importing the module names its file and line.

Importing runs the modules' top-level code, so this runs where the mesh is started
(``choreo up``, ``choreo run agent``: ``choreo.spec.mesh.load_mesh(..., code=True)``), not on
every spec load.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from choreo.spec.check import Loc, Problem, suggest

if TYPE_CHECKING:
    from choreo.spec.mesh import MeshSpec

#: Commands an MCP server entry may start that always exist: the agent's own interpreter.
PYTHON = frozenset({"python", "python3"})


def code_problems(spec: MeshSpec) -> list[Problem]:
    """Every handler or tool path that does not import, every MCP command not found."""
    for folder in spec.python_path:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    return list(_problems(spec))


def _problems(spec: MeshSpec) -> Iterator[Problem]:
    cwd = spec.python_path[-1] if spec.python_path else Path.cwd()
    for i, agent in enumerate(spec.agents):
        paths: list[tuple[Loc, str]] = []
        if agent.handler is not None:
            paths.append((("handler",), agent.handler))
        for t, tool in enumerate(agent.tools):
            # by field, not class: choreo.spec.mesh imports this module
            if isinstance(function := getattr(tool, "function", None), str):
                paths.append((("tools", t, "function"), function))
            elif command := getattr(tool, "command", None):
                why = command_problem(command[0], cwd)
                if why is not None:
                    yield Problem(("agents", i, "tools", t, "command", 0), why)
        for loc, path in paths:
            if (why := import_problem(path, spec.python_path)) is not None:
                yield Problem(("agents", i, *loc), why)


def import_problem(path: str, folders: Sequence[Path] = ()) -> str | None:
    """Why ``package.module:attribute`` does not import, or None when it does."""
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            known = _modules(folders, exc.name.rpartition(".")[0])
            return f"no module named {exc.name!r}{suggest(exc.name.rpartition('.')[2], known)}"
        return f"importing {module_name!r} failed: {_where(exc)}"
    except BaseException as exc:  # the module's own code raised while importing
        return f"importing {module_name!r} failed: {_where(exc)}"
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            known = [n for n in dir(target) if not n.startswith("_")]
            where = getattr(target, "__file__", None) or module_name
            return f"{where} has no {part!r}{suggest(part, known)}"
    return None


def _modules(folders: Sequence[Path], package: str) -> list[str]:
    """The modules and packages a folder (or a package's folder) of the mesh holds."""
    names: list[str] = []
    for folder in folders:
        base = folder.joinpath(*package.split(".")) if package else folder
        if base.is_dir():
            names += [p.stem for p in base.glob("*.py")]
            names += [p.parent.name for p in base.glob("*/__init__.py")]
    return names


def _where(exc: BaseException) -> str:
    """``Type: message (file:line)``, the line where the importing module's code raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"SyntaxError: {exc.msg} ({exc.filename}:{exc.lineno})"
    own = [f for f in frames if "importlib" not in f.filename]
    at = f" ({own[-1].filename}:{own[-1].lineno})" if own else ""
    return f"{traceback.format_exception_only(exc)[-1].strip()}{at}"


def command_problem(command: str, cwd: Path) -> str | None:
    """Why an MCP server's command cannot be started, or None when it can (as far as a
    look at ``PATH`` and the mesh's folder tells)."""
    if command in PYTHON:
        return None
    if os.sep in command or (os.altsep and os.altsep in command):
        path = Path(command) if Path(command).is_absolute() else cwd / command
        if not path.is_file():
            return f"no such command: {path}"
        if not os.access(path, os.X_OK):
            return f"command {path} is not executable"
        return None
    if shutil.which(command) is None:
        return f"command {command!r} not found on PATH"
    return None
