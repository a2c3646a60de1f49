"""deploy/Dockerfile: one non-root image with the `choreo` entrypoint, built from exactly the
files the Python package needs (the build context is trimmed by Dockerfile.dockerignore)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            pairs.append((keyword.upper(), args.strip()))
    return pairs


def values(keyword: str) -> list[str]:
    return [args for key, args in instructions() if key == keyword]


def test_base_entrypoint_and_user() -> None:
    assert values("FROM") == ["python:3.11-slim"]
    assert json.loads(values("ENTRYPOINT")[-1]) == ["choreo"]
    user = values("USER")[-1].split(":")[0]
    assert user not in {"root", "0"}
    assert any("bubblewrap" in run for run in values("RUN"))
    assert any("pip install" in run and " ." in run for run in values("RUN"))


def test_copies_what_the_package_build_needs() -> None:
    copied = {src for args in values("COPY") for src in args.split()[:-1]}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    # The one import package, and the folders pyproject.toml maps into it (the examples).
    needed |= {"choreo"} | set(project["tool"]["setuptools"]["package-dir"].values())
    assert needed <= copied
    for src in copied:
        assert (ROOT / src).exists(), src


def test_dockerignore_keeps_every_copied_path() -> None:
    rules = [
        line
        for line in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules[0] == "*"
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = {src for args in values("COPY") for src in args.split()[:-1]}
    assert copied <= kept
