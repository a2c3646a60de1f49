"""``choreo``: the command line of Choreo Mesh.

Every subcommand fails fast with a message naming the bad argument or spec field, and exits
non-zero: 2 for bad input, 1 when the mesh or broker did not do what was asked, 3 when a trace
asked for has not ended yet (the commands return 0 and 3 themselves; :func:`failure` turns an
error into 2 or 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from choreo.cli import bench, console, letters, operate, security, traces
from choreo.cli.common import Command, UsageError
from choreo.local import announce as local
from choreo.local.announce import NoBrokerAddress
from choreo.observe import logs
from choreo.observe import terminal as output
from choreo.observe.errors import SettingsError
from choreo.observe.settings import Settings, get_settings
from choreo.schemas.errors import ChoreoError
from choreo.spec.errors import SpecError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="choreo",
        description="Run, inspect and measure a Choreo Mesh: an event-driven "
        "mesh of AI agents on Kafka.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func)
        return command

    operate.register(add)
    traces.register(add)
    letters.register(add)
    console.register(add)
    security.register(add)
    bench.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = local.follow(get_settings())
        logs.configure_cli(settings)
        code: int = args.func(args, settings)
    except Exception as exc:
        failed = failure(exc, settings)
        if failed is None:
            raise  # a bug: its traceback is the report
        code, message = failed
        output.error(message)
    return code


def failure(exc: Exception, settings: Settings | None) -> tuple[int, str] | None:
    """The exit code and the one line to print for an error a command raised; ``None`` for
    an error no user can fix (a bug), whose traceback is then shown.

    2: the input is bad (an argument, the spec, a model script or tier, an environment
    variable); fix it and run the command again. 1: the mesh or broker did not do what was
    asked (no broker answers, nothing found, a server of the mesh did not start, ...).
    ``settings`` is ``None`` when reading them failed.
    """
    # Imported here, not at the top: ``choreo --help`` loads no Kafka client (a test checks).
    from aiokafka.errors import KafkaConnectionError, KafkaError

    from choreo.models.errors import ModelConfigError, ScriptError

    match exc:
        case (
            UsageError()
            | SpecError()
            | SettingsError()
            | ModelConfigError()
            | ScriptError()
            | NoBrokerAddress()
        ):
            return 2, str(exc)
        case KafkaConnectionError():
            return 1, _unreachable(settings)
        case KafkaError():  # the broker answered with an error: one line, not a traceback
            return 1, f"the broker refused the request: {type(exc).__name__}: {exc}"
        case ChoreoError():
            return 1, str(exc)
    return None


def _unreachable(settings: Settings | None) -> str:
    """The broker a command tried, where its address came from, and what to check."""
    if settings is not None and settings.bootstrap_servers:
        where = f"{settings.bootstrap_servers} (check KAFKA_BOOTSTRAP_SERVERS"
    else:
        where = f"{local.running_broker()} (the broker of this folder's `choreo up`"
    return f"no broker answers at {where} and that the broker is running)"


if __name__ == "__main__":
    sys.exit(main())
