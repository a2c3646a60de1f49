"""``import choreo`` is cheap: the public names load on first use, each shown as ``choreo.X``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import choreo

#: What a service or the CLI needs, and a user writing an agent or a tool does not.
HEAVY = (
    "aiokafka",
    "faust",
    "httpx",
    "prometheus_client",
    "opentelemetry",
    "rich",
    "yaml",
    "choreo.model_server",
)


def loaded_by(statement: str) -> list[str]:
    """The modules ``statement`` adds to ``sys.modules`` in a fresh interpreter."""
    program = (
        "import json, sys; before = set(sys.modules); "
        f"{statement}; print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    "statement",
    [
        "import choreo",
        "import choreo.errors",
        "from choreo import agent, tool, Step, Result, BudgetLeft, ToolError, ModelError",
    ],
)
def test_the_public_api_loads_no_kafka_http_metrics_tracing_or_model_server(
    statement: str,
) -> None:
    loaded = loaded_by(statement)
    assert [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)] == []


def test_import_choreo_alone_loads_none_of_its_layers() -> None:
    # but the empty choreo.agent package, loaded so it cannot hide the decorator choreo.agent
    layers = [m for m in loaded_by("import choreo") if m.startswith("choreo.")]
    assert layers == ["choreo.agent"]


def test_choreo_agent_is_the_decorator_even_after_the_agent_package_was_imported() -> None:
    program = (
        "import choreo.agent.sdk, choreo.agent.kinds, choreo; "
        "print(choreo.agent.__module__, choreo.agent.__name__, choreo.Step.__module__)"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["choreo", "agent", "choreo"]


def test_every_exported_name_resolves_and_shows_choreo_as_its_module() -> None:
    assert choreo.__all__ == sorted(choreo.__all__)
    for name in choreo.__all__:
        value = getattr(choreo, name)
        if name == "__version__":
            assert isinstance(value, str) and value
        else:
            assert value.__module__ == "choreo", name
    assert repr(choreo.ModelError) == "<class 'choreo.ModelError'>"


def test_the_exports_are_listed_by_dir_and_an_unknown_name_is_an_attribute_error() -> None:
    assert set(choreo.__all__) <= set(dir(choreo))
    with pytest.raises(AttributeError, match="has no attribute 'Missing'"):
        choreo.Missing  # noqa: B018
    assert not hasattr(choreo, "Missing")


def test_the_error_tree_is_reachable_after_a_bare_import_choreo() -> None:
    program = "import choreo; print(choreo.errors.SpecError.__mro__[1].__name__)"
    done = subprocess.run(
        [sys.executable, "-P", "-c", program], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ChoreoError"), done.stderr


def test_a_name_is_the_same_object_from_the_front_door_and_from_its_home() -> None:
    from choreo.agent.sdk import Step
    from choreo.models.client import ModelError

    assert choreo.Step is Step
    assert choreo.ModelError is ModelError
