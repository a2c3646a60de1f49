"""Where the example meshes are: in the installed package, or beside it in a checkout.

The meshes live in the repository's top-level ``examples/``; the wheel ships them as
``choreo/examples/`` (pyproject.toml maps that package to the folder). An editable install
imports ``choreo`` from the checkout, where the folder is beside the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def examples_dir() -> Path:
    """The folder holding one sub-folder per example mesh (``writer-editor/mesh.yaml``, ...).

    Raises:
        FileNotFoundError: neither an installed nor a checkout copy is there.
    """
    for candidate in (_PACKAGE / "examples", _PACKAGE.parent / "examples"):
        if (candidate / "writer-editor" / "mesh.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no example meshes beside or inside {_PACKAGE}")


def example_mesh(name: str) -> Path:
    """The spec of the example called ``name`` (e.g. ``writer-editor``)."""
    return examples_dir() / name / "mesh.yaml"
