"""Scripted model servers as real processes, one per script, stopped after each module."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import yaml

from choreo.model_server import model_server


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., str]]:
    """Start a scripted model server for a script's fields; returns its base URL."""
    folder = tmp_path_factory.mktemp("scripts")
    names = (folder / f"model-{i}.yaml" for i in itertools.count())
    with ExitStack() as servers:

        def start(**script: Any) -> str:
            path = next(names)
            path.write_text(yaml.safe_dump({"model": "tiers", **script}))
            return servers.enter_context(model_server(path))

        yield start
