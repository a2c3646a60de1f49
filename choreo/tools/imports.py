"""Resolving ``package.module:attribute`` import paths named in a mesh spec."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from choreo.schemas.errors import ChoreoError


class ImportPathError(ChoreoError, ImportError):
    """An import path that names no importable object; the message says which part failed."""


def add_to_path(folders: Iterable[Path]) -> None:
    """Append ``folders`` to ``sys.path`` (once each): services start with ``python -P``, so
    the mesh's own folder is not importable until it is added."""
    for folder in folders:
        entry = str(folder)
        if entry not in sys.path:
            sys.path.append(entry)


def resolve(path: str) -> Any:
    """The object ``path`` (``package.module:attribute``, attribute may be dotted) names.

    Raises ``ImportPathError`` when the module cannot be imported or has no such attribute.
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ImportPathError(f"{path!r}: expected 'package.module:attribute'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportPathError(f"{path!r}: cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ImportPathError(
                f"{path!r}: module {module_name!r} has no {attribute!r}"
            ) from None
    return target
