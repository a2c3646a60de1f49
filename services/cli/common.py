"""What every ``choreo`` command shares: the consoles, input errors, the broker address."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from choreo.services.runtime.settings import Settings

console = Console()
err = Console(stderr=True, soft_wrap=True)
#: The checkout (or, installed, the `choreo` package): both hold `examples/`.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: A subcommand: parsed arguments and settings in, exit status out.
Command = Callable[[argparse.Namespace, Settings], int]
#: Registers one subcommand and returns its parser, for its arguments.
AddCommand = Callable[[str, Command, str], argparse.ArgumentParser]


class UsageError(Exception):
    """Bad command-line input; the message says which argument and why."""


def bootstrap_of(settings: Settings) -> str:
    """The broker address, or a usage error that says how to get one."""
    if not settings.bootstrap_servers:
        raise UsageError("no broker address: set KAFKA_BOOTSTRAP_SERVERS "
                         "(`choreo up` and `choreo broker` print it)")
    return settings.bootstrap_servers


def positive(value: str) -> float:
    """An argparse type: a number of seconds (or any quantity) above zero."""
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number
