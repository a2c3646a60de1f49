"""``choreo``: the command line of Choreo Mesh.

Every subcommand fails fast with a message naming the bad argument or spec field, and exits
non-zero: 2 for bad input, 1 when the mesh or broker did not do what was asked.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiokafka.errors import KafkaConnectionError

from choreo.services.bench import cli as bench
from choreo.services.cli import operate, traces
from choreo.services.cli.common import Command, UsageError, err
from choreo.services.runtime.broker import BrokerError
from choreo.services.runtime.llm import ModelConfigError
from choreo.services.runtime.settings import get_settings
from choreo.services.runtime.spec import SpecError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="choreo", description="Run, inspect and measure a Choreo Mesh: an event-driven "
        "mesh of AI agents on Kafka.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func)
        return command

    operate.register(add)
    traces.register(add)
    bench.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args, get_settings())
        return code
    except (SpecError, UsageError, ModelConfigError) as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    except (BrokerError, LookupError) as exc:  # missing traces, escalations
        err.print(f"[red]error:[/] {exc}")
        return 1
    except KafkaConnectionError as exc:
        err.print(f"[red]error:[/] no broker answers at {get_settings().bootstrap_servers}: "
                  f"{exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
