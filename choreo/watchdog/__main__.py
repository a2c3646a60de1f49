"""``python -m choreo.watchdog --mesh PATH``: run the watchdog of one mesh."""

from __future__ import annotations

import argparse
import sys

from choreo.kafka.runner import run_service
from choreo.observe.settings import Settings
from choreo.spec.mesh import SpecError, load_mesh
from choreo.watchdog.app import WatchdogService


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m choreo.watchdog", description=__doc__)
    parser.add_argument("--mesh", required=True, help="path of the mesh spec (YAML)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (default: from the env)")
    args = parser.parse_args(argv)
    settings = Settings()
    bootstrap = args.bootstrap or settings.bootstrap_servers
    if not bootstrap:
        parser.error("no broker: pass --bootstrap or set KAFKA_BOOTSTRAP_SERVERS")
    try:
        spec = load_mesh(args.mesh)
    except SpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    run_service("watchdog", settings, lambda: WatchdogService(spec, bootstrap, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
