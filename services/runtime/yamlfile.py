"""Reading a YAML file into a pydantic model, with errors that name the file and each field.

Mesh specs and scripted-model scripts both come from files a person wrote; both fail the same
way, at load time, with one line per bad field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


def describe(source: str, what: str, exc: ValidationError) -> str:
    """``source: invalid WHAT`` and then ``  field.path: message`` for every error."""
    lines = [f"{source}: invalid {what}"]
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {loc}: {error['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def read(path: Path, what: str, error: type[Exception]) -> Any:
    """The file's YAML, or ``error`` saying the file is missing, unreadable or not YAML."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
