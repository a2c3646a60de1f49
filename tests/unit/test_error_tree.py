"""Every error a user can catch hangs from ``ChoreoError`` and is exported by ``choreo.errors``,
still an instance of the builtin it used to be."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import choreo.errors
from choreo.errors import ChoreoError
from choreo.schemas import Usage

#: The builtin each class derived from before the tree: code catching it must keep working.
BUILTINS: dict[str, type[Exception]] = {
    "SpecError": ValueError,
    "SettingsError": ValueError,
    "ModelConfigError": ValueError,
    "ScriptError": ValueError,
    "ImportPathError": ImportError,
    "DecodeError": ValueError,
    "ReducerError": ValueError,
    "RecordTooLarge": ValueError,
    "BrokerError": RuntimeError,
    "BrokerOutage": RuntimeError,
    "Fenced": RuntimeError,
    "ServiceStartError": RuntimeError,
    "ServiceFailed": RuntimeError,
    "MeshNotReady": TimeoutError,
    "ModelError": RuntimeError,
    "OverBudget": RuntimeError,
    "ToolSetupError": RuntimeError,
    "McpUnavailable": RuntimeError,
    "SandboxError": RuntimeError,
}

EXPORTED = [getattr(choreo.errors, name) for name in choreo.errors.__all__]


def every_choreo_error() -> set[type[BaseException]]:
    """Every subclass of ``ChoreoError`` defined anywhere in the package."""
    for module in pkgutil.walk_packages(choreo.__path__, "choreo."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: set[type[BaseException]] = set()
    todo: list[type[BaseException]] = [ChoreoError]
    while todo:
        kind = todo.pop()
        found.add(kind)
        todo += kind.__subclasses__()
    return found


@pytest.mark.parametrize("kind", EXPORTED, ids=lambda kind: kind.__name__)
def test_every_exported_error_hangs_from_choreo_error(kind: type[Exception]) -> None:
    assert issubclass(kind, ChoreoError)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_each_error_still_is_the_builtin_it_replaced(name: str) -> None:
    assert issubclass(getattr(choreo.errors, name), BUILTINS[name])


def test_every_choreo_error_in_the_package_is_exported_by_choreo_errors() -> None:
    public = {kind for kind in every_choreo_error() if not kind.__name__.startswith("_")}
    assert {kind.__name__ for kind in public - set(EXPORTED)} == set()


def test_the_tree_drawn_in_the_docstring_names_every_exported_class() -> None:
    drawn = choreo.errors.__doc__ or ""
    branch = r"^ *(?:[│├└─] *)*{}\b"
    missing = [n for n in choreo.errors.__all__ if not re.search(branch.format(n), drawn, re.M)]
    assert missing == []


def test_an_error_is_one_class_whatever_module_it_is_imported_from() -> None:
    from choreo.kafka.clients import BrokerOutage
    from choreo.models.client import ModelConfigError, ModelError
    from choreo.spec.mesh import SpecError
    from choreo.tools.mcp import McpUnavailable

    assert ModelError is choreo.errors.ModelError
    assert SpecError is choreo.errors.SpecError
    assert BrokerOutage is choreo.errors.BrokerOutage
    assert ModelConfigError is choreo.errors.ModelConfigError
    assert McpUnavailable is choreo.errors.McpUnavailable


def test_a_model_error_keeps_its_reason_attempts_and_usage() -> None:
    billed = Usage(tokens_in=10, tokens_out=2, calls=2)
    error = choreo.errors.ModelError("http_500", "HTTP 500: down", attempts=2, usage=billed)
    assert (error.reason, error.attempts, error.usage, str(error)) == (
        "http_500",
        2,
        billed,
        "HTTP 500: down",
    )
    assert choreo.errors.ModelError("timeout", "slow", attempts=3).usage == Usage(calls=3)


def test_a_step_over_its_share_of_the_budget_is_caught_as_budget_exhausted() -> None:
    from choreo.budget.allowance import Spending
    from choreo.schemas.records import Allowance
    from choreo.spec.mesh import ModelTier

    spending = Spending(Allowance(tokens=5))
    tier = ModelTier(model="m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(choreo.errors.BudgetExhausted) as caught:
        spending.cap([{"role": "user", "content": "a prompt longer than five tokens"}], tier, None)
    assert isinstance(caught.value, choreo.errors.OverBudget)
    assert caught.value.rule == "budget.tokens"
