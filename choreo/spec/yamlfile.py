"""Reading a YAML file into a pydantic model, with errors that name the file, the line and each
field.

Mesh specs and scripted-model scripts both come from files a person wrote; both fail the same
way, at load time, with one line per mistake: ``file:line: path: message``. A path names list
items by their ``name`` when they have one (``agents[writer].routes[#2].emit``), else by their
position counted from 1 (``#2``), so the same path reads the same in every message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A YAML file's data and its node tree, which knows the line of every value."""

    data: Any
    root: yaml.Node | None = None

    def line(self, loc: Loc) -> int | None:
        """The 1-based line of the value at ``loc`` (a key's own line for a mapping entry);
        where ``loc`` leaves the document (a missing field), the line of its nearest parent."""
        node = self.root
        if node is None:
            return None
        line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                found = next(((k, v) for k, v in node.value if k.value == str(part)), None)
                if found is None:
                    break
                line, node = found[0].start_mark.line + 1, found[1]
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line


def path_text(data: Any, loc: Loc) -> str:
    """``loc`` as a path a person reads: ``agents[writer].routes[#2].emit``."""
    text = ""
    node = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
            name = node.get("name") if isinstance(node, dict) else None
            text += f"[{name}]" if isinstance(name, str) and name else f"[#{part + 1}]"
            continue
        text += f".{part}" if text else str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return text or "(top level)"


def _problems(error: Any) -> list[tuple[Loc, str]]:
    """A pydantic error as (path, message) pairs; a validator that raised several problems
    at once (an exception with ``problems``, each with ``loc`` and ``message``) gives each."""
    loc = tuple(error["loc"])
    raised = (error.get("ctx") or {}).get("error")
    many = getattr(raised, "problems", None)
    if many:
        return [((*loc, *p.loc), p.message) for p in many]
    return [(loc, error["msg"].removeprefix("Value error, "))]


def describe(source: str, what: str, exc: ValidationError, document: Document | None = None) -> str:
    """``source: invalid WHAT`` and then ``  source:LINE: path: message`` for every mistake,
    in the order of the file."""
    return describe_problems(
        source, what, [p for e in exc.errors() for p in _problems(e)], document
    )


def describe_problems(
    source: str, what: str, problems: Sequence[tuple[Loc, str]], document: Document | None = None
) -> str:
    """Like :func:`describe`, for (path, message) pairs found outside pydantic."""
    data = document.data if document is not None else None
    found = []
    for loc, message in problems:
        line = document.line(loc) if document is not None else None
        where = f"{source}:{line}" if line is not None else source
        found.append((line or 0, f"  {where}: {path_text(data, loc)}: {message}"))
    lines = [f"{source}: invalid {what}"]
    lines += [text for _, text in sorted(found, key=lambda pair: pair[0])]
    return "\n".join(lines)


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """``file:line:column: problem (context)`` from a YAML error's marks."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def load(path: Path, what: str, error: type[Exception]) -> Document:
    """The file's YAML with its node tree, or ``error`` saying the file is missing,
    unreadable or not YAML (at which line and column)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        return Document(yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise error(_yaml_error(path, exc)) from None


def read(path: Path, what: str, error: type[Exception]) -> Any:
    """The file's YAML data, or ``error`` as :func:`load` raises it."""
    return load(path, what, error).data
