"""The distribution is one real package: no links, every subpackage listed for the wheel."""

from __future__ import annotations

import subprocess
import tomllib

from tests.conftest import REPO


def test_the_repository_tracks_no_symbolic_links() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-s"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [line.split()[-1] for line in listed if line.startswith("120000")] == []


def test_pyproject_lists_every_subpackage_of_choreo() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "choreo").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == found | set(setuptools["package-dir"])
