"""What every ``choreo`` command shares: input errors, argument types, the broker address and
the client of the running mesh.

Light to import: ``choreo --help`` builds every parser from here and the command modules; what
a command needs to run (the client, Kafka, the views) is imported by the command itself.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from pydantic import ValidationError

from choreo.local import announce as local
from choreo.observe.settings import Settings
from choreo.spec.mesh import BudgetSpec

if TYPE_CHECKING:
    from choreo.client import Client

T = TypeVar("T")

#: A subcommand: parsed arguments and settings in, exit status out.
Command = Callable[[argparse.Namespace, Settings], int]
#: Registers one subcommand and returns its parser, for its arguments.
AddCommand = Callable[[str, Command, str], argparse.ArgumentParser]


class UsageError(Exception):
    """Bad command-line input; the message says which argument and why."""


def bootstrap_of(settings: Settings) -> str:
    """The broker of the running mesh, by choreo.local.announce.broker_of's rules; a usage
    error that says how to give one otherwise."""
    try:
        return local.broker_of(settings)
    except local.NoBrokerAddress as exc:
        raise UsageError(str(exc)) from None


def with_client(
    settings: Settings, work: Callable[[Client], Awaitable[T]], bootstrap: str | None = None
) -> T:
    """Run ``work`` with a client of the mesh on ``bootstrap`` (default: ``bootstrap_of``), in
    one event loop; the client is closed when ``work`` returns or raises."""
    address = bootstrap if bootstrap is not None else bootstrap_of(settings)
    from choreo.client import Client

    async def run() -> T:
        async with Client(address, settings=settings) as client:
            return await work(client)

    return asyncio.run(run())


def positive(value: str) -> float:
    """An argparse type: a number of seconds (or any quantity) above zero."""
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def budget_limit(name: str) -> Callable[[str], float | int]:
    """An argparse type for one budget limit, checked by the spec's own rule for ``name``
    (``budgets.max_hops`` and its siblings), so the CLI and the spec never disagree."""
    integer = BudgetSpec.model_fields[name].annotation == int | None

    def parse(value: str) -> float | int:
        try:
            number = int(value) if integer else float(value)
            checked = getattr(BudgetSpec.model_validate({name: number}), name)
        except ValueError as exc:
            reason = (
                exc.errors()[0]["msg"]
                if isinstance(exc, ValidationError)
                else "not a whole number"
                if integer
                else "not a number"
            )
            raise argparse.ArgumentTypeError(f"{reason}, got {value}") from None
        return checked

    return parse
