"""``choreo bench``: each benchmark runs on a real broker and writes its section of
docs/BENCHMARKS.md together with the command that produced it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from choreo.services.bench.stats import write_section
from choreo.services.cli.common import REPO_ROOT, console
from choreo.services.runtime.broker import (
    ApacheKafka,
    BrokerHandle,
    EmbeddedBroker,
    broker_session,
)
from choreo.services.runtime.settings import Settings

BENCHMARKS = REPO_ROOT / "docs" / "BENCHMARKS.md"


def _publish(title: str, out: str, measure: Callable[[BrokerHandle], str]) -> int:
    """Measure against the resolved broker, then write and print the report section."""
    with broker_session() as broker:
        body = measure(broker)
    write_section(Path(out), title, body)
    print(body)
    console.print(f"written to {out}")
    return 0


def cmd_hop(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.services.bench import hop

    command = f"choreo bench hop --traces {args.traces} --chain {args.chain}"
    return _publish("Hop", args.out, lambda broker: hop.report(
        hop.run(broker.bootstrap, args.traces, args.chain), command, broker.kind))


def cmd_state(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.services.bench import state

    command = f"choreo bench state --folds {args.folds} --traces {args.traces}"
    return _publish("State", args.out, lambda broker: state.report(
        state.run(broker.bootstrap, settings, args.folds, args.traces), command, broker.kind))


def cmd_watchdog(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.services.bench import watchdog

    return _publish("Watchdog", args.out, lambda broker: watchdog.report(
        watchdog.run(broker.bootstrap, Path(args.log_dir), Path(args.mesh)),
        "choreo bench watchdog", broker.kind))


def cmd_idle(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.services.bench import idle

    brokers = {"embedded": EmbeddedBroker, "kafka": ApacheKafka}
    usage = {}
    for kind in args.brokers:
        broker = brokers[kind]().start()
        try:
            usage[kind] = idle.run(broker.bootstrap, Path(args.log_dir) / kind, args.settle,
                                   args.window)
        finally:
            broker.stop()
    command = f"choreo bench idle --window {args.window:g} --brokers {' '.join(args.brokers)}"
    body = idle.report(usage, command, args.window)
    write_section(Path(args.out), "Idle CPU", body)
    print(body)
    console.print(f"written to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="measure the mesh on a real broker",
                           description=__doc__.splitlines()[0])
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")

    p = kinds.add_parser("hop", help="per-step overhead vs a raw Kafka relay")
    p.set_defaults(func=cmd_hop)
    p.add_argument("--traces", type=int, default=200)
    p.add_argument("--chain", type=int, default=4)
    p.add_argument("--out", default=str(BENCHMARKS))

    p = kinds.add_parser("state", help="folds per second and outbox replay rate")
    p.set_defaults(func=cmd_state)
    p.add_argument("--folds", type=int, default=50_000, help="deltas folded in-process")
    p.add_argument("--traces", type=int, default=1000, help="traces written to a real outbox")
    p.add_argument("--out", default=str(BENCHMARKS))

    p = kinds.add_parser("idle", help="CPU per service of an idle mesh, per broker")
    p.set_defaults(func=cmd_idle)
    p.add_argument("--brokers", nargs="+", choices=["embedded", "kafka"],
                   default=["embedded", "kafka"], help="brokers to start, one after the other")
    p.add_argument("--settle", type=float, default=15.0, help="seconds before the window")
    p.add_argument("--window", type=float, default=30.0, help="seconds measured")
    p.add_argument("--log-dir", default=".choreo/logs/bench-idle")
    p.add_argument("--out", default=str(BENCHMARKS))

    p = kinds.add_parser("watchdog",
                         help="steps a loop still runs before each verdict, per scenario")
    p.set_defaults(func=cmd_watchdog)
    p.add_argument("--mesh", default=str(REPO_ROOT / "tests" / "scenarios" / "mesh.yaml"))
    p.add_argument("--log-dir", default=".choreo/logs/bench-watchdog")
    p.add_argument("--out", default=str(BENCHMARKS))
