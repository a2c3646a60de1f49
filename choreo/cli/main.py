"""``choreo``: the command line of Choreo Mesh.

Every subcommand fails fast with a message naming the bad argument or spec field, and exits
non-zero: 2 for bad input, 1 when the mesh or broker did not do what was asked, 3 when a trace
asked for has not ended yet.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import ValidationError

from choreo.cli import bench, letters, operate, traces
from choreo.cli.common import Command, UsageError
from choreo.kafka.broker import BrokerError
from choreo.local import announce as local
from choreo.local.processes import ServiceStartError
from choreo.models.client import ModelConfigError
from choreo.observe import logs
from choreo.observe import terminal as output
from choreo.observe.settings import Settings, get_settings, settings_error
from choreo.spec.mesh import SpecError


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
    bench.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = local.follow(get_settings())
    except ValidationError as exc:
        output.error(settings_error(exc))
        return 2
    logs.configure_cli(settings)
    return _run(args, settings)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        code: int = args.func(args, settings)
        return code
    except (SpecError, UsageError, ModelConfigError) as exc:
        output.error(str(exc))
        return 2
    # missing traces, escalations or meshes; a server of the mesh that would not start
    except (BrokerError, LookupError, ServiceStartError) as exc:
        output.error(str(exc))
        return 1
    except KafkaConnectionError:
        if settings.bootstrap_servers:
            where = f"{settings.bootstrap_servers} (check KAFKA_BOOTSTRAP_SERVERS"
        else:
            where = f"{local.running_broker()} (the broker of this folder's `choreo up`"
        output.error(f"no broker answers at {where} and that the broker is running)")
        return 1
    except KafkaError as exc:  # the broker answered with an error: one line, not a traceback
        output.error(f"the broker refused the request: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
