"""What every ``choreo`` command shares: input errors, argument types, the broker address."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pydantic import ValidationError

from choreo.local import announce as local
from choreo.observe.settings import Settings
from choreo.spec.mesh import BudgetSpec

#: A subcommand: parsed arguments and settings in, exit status out.
Command = Callable[[argparse.Namespace, Settings], int]
#: Registers one subcommand and returns its parser, for its arguments.
AddCommand = Callable[[str, Command, str], argparse.ArgumentParser]


class UsageError(Exception):
    """Bad command-line input; the message says which argument and why."""


def bootstrap_of(settings: Settings) -> str:
    """The broker of the running mesh: ``KAFKA_BOOTSTRAP_SERVERS`` (or
    ``CHOREO_BOOTSTRAP_SERVERS``) if set, else the broker of a ``choreo up`` running from the
    current folder; a usage error that says how to get one otherwise.

    Commands that read or write a running mesh never start a broker of their own: a new
    broker would hold none of the mesh's records.
    """
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    if (found := local.running_broker()) is not None:
        return found
    raise UsageError(
        "no broker address: set KAFKA_BOOTSTRAP_SERVERS to the broker the mesh "
        "runs on (`choreo up` and `choreo broker` print it), or run this command "
        f"in the folder of a running `choreo up` (it writes {local.UP_FILE})"
    )


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
