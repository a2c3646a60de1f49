"""``choreo bench``: each benchmark runs on a real broker and prints its report section, with
the command that produced it; ``--output FILE`` also writes the section into FILE (e.g.
docs/BENCHMARKS.md in a checkout), replacing that section only."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from choreo.bench.scenarios import SCENARIO_MESH
from choreo.observe.settings import Settings

if TYPE_CHECKING:
    from choreo.kafka.broker import ApacheKafka, BrokerHandle, EmbeddedBroker

#: The brokers ``--brokers`` can start, one after the other (choreo.kafka.broker).
_KINDS = ("embedded", "kafka")


def _broker(kind: str) -> EmbeddedBroker | ApacheKafka:
    """A broker of ``kind`` (one of ``_KINDS``), not started."""
    from choreo.kafka.broker import ApacheKafka, EmbeddedBroker

    return EmbeddedBroker() if kind == "embedded" else ApacheKafka()


def _publish(title: str, out: str | None, measure: Callable[[BrokerHandle], str]) -> int:
    """Measure against the resolved broker, print the report section, then write it to
    ``out`` if given: the figures are on stdout before any file can fail."""
    from choreo.kafka.broker import broker_session

    with broker_session() as broker:
        body = measure(broker)
    _emit(title, out, body)
    return 0


def _emit(title: str, out: str | None, body: str) -> None:
    from choreo.bench.stats import publish
    from choreo.observe import terminal as output

    publish(title, out, body)
    if out is not None:
        output.warn(f"written to {out}")


def cmd_hop(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.bench import hop
    from choreo.kafka.broker import broker_kind, broker_session

    command = f"choreo bench hop --traces {args.traces} --chain {args.chain}"
    results = {}
    if args.brokers:
        command += f" --brokers {' '.join(args.brokers)}"
        for kind in args.brokers:
            started = _broker(kind).start()
            try:
                results[kind] = hop.run(started.bootstrap, args.traces, args.chain)
            finally:
                started.stop()
    else:
        with broker_session() as broker:
            results[broker_kind(broker.bootstrap)] = hop.run(
                broker.bootstrap, args.traces, args.chain
            )
    _emit("Hop", args.out, hop.report(results, command))
    return 0


def cmd_state(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.bench import state

    command = f"choreo bench state --folds {args.folds} --traces {args.traces}"
    return _publish(
        "State",
        args.out,
        lambda broker: state.report(
            state.run(broker.bootstrap, settings, args.folds, args.traces), command, broker.kind
        ),
    )


def cmd_watchdog(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.bench import corpus, watchdog

    if args.live:
        return _publish(
            "Watchdog",
            args.out,
            lambda broker: watchdog.report(
                watchdog.run(broker.bootstrap, Path(args.log_dir), Path(args.mesh)),
                "choreo bench watchdog --live",
                broker.kind,
            ),
        )
    outcomes = corpus.run_corpus(corpus.load_cases(Path(args.corpus or corpus.CORPUS)))
    _emit("Watchdog corpus", args.out, watchdog.corpus_report(outcomes, "choreo bench watchdog"))
    return 0 if watchdog.calibration(outcomes).on_target else 1


def _output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        "--out",
        dest="out",
        default=None,
        metavar="FILE",
        help="also write the section into this Markdown file, replacing the "
        "section of the same title (default: stdout only)",
    )


def cmd_idle(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.bench import idle

    usage = {}
    for kind in args.brokers:
        broker = _broker(kind).start()
        try:
            usage[kind] = idle.run(
                broker.bootstrap, Path(args.log_dir) / kind, args.settle, args.window
            )
        finally:
            broker.stop()
    command = f"choreo bench idle --window {args.window:g} --brokers {' '.join(args.brokers)}"
    _emit("Idle CPU", args.out, idle.report(usage, command, args.window))
    return 0


def cmd_long(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.bench import long

    if args.mesh:
        from choreo.bench import long_mesh
        from choreo.kafka.broker import broker_kind, broker_session

        command = f"choreo bench long --mesh --steps {args.steps} --width {args.width}"
        with broker_session() as broker:
            on_broker = long_mesh.run(broker.bootstrap, args.steps, args.width)
            kind = broker_kind(broker.bootstrap)
        title = "the embedded broker" if kind == "embedded" else "Apache Kafka"
        _emit(
            f"Long traces on {title}",
            args.out,
            long_mesh.report(on_broker, command, kind, args.width),
        )
        return 0
    command = (
        f"choreo bench long --steps {args.steps}"
        + (f" --width {args.width}" if args.width != long.LINE_BYTES else "")
        + (" --profile" if args.profile else "")
    )
    result = long.run(args.steps, profile=args.profile, width=args.width)
    _emit("Long traces", args.out, long.report(result, command))
    if args.profile:
        print(result.profile)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench", help="measure the mesh on a real broker", description=" ".join(__doc__.split())
    )
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")

    p = kinds.add_parser("hop", help="per-step overhead vs a raw Kafka relay")
    p.set_defaults(func=cmd_hop)
    p.add_argument(
        "--traces", type=int, default=200, help="traces sent through each path (default: 200)"
    )
    p.add_argument("--chain", type=int, default=4, help="steps per trace (default: 4)")
    p.add_argument(
        "--brokers",
        nargs="+",
        choices=list(_KINDS),
        default=None,
        help="brokers to start, one after the other, a column each (default: the "
        "resolved broker: KAFKA_BOOTSTRAP_SERVERS, else Docker, else embedded)",
    )
    _output_option(p)

    p = kinds.add_parser("state", help="folds per second and outbox replay rate")
    p.set_defaults(func=cmd_state)
    p.add_argument(
        "--folds", type=int, default=50_000, help="deltas folded in-process (default: 50000)"
    )
    p.add_argument(
        "--traces", type=int, default=1000, help="traces written to a real outbox (default: 1000)"
    )
    _output_option(p)

    p = kinds.add_parser("long", help="the keeper's cost per step over one long trace")
    p.set_defaults(func=cmd_long)
    p.add_argument("--steps", type=int, default=1000, help="steps in the trace (default: 1000)")
    p.add_argument(
        "--profile", action="store_true", help="also print the keeper's cProfile (top 20)"
    )
    p.add_argument(
        "--mesh",
        action="store_true",
        help="run the keeper and the agent on the resolved broker instead of the keeper alone",
    )
    p.add_argument("--width", type=int, default=2048, help="bytes per line (default: 2048)")
    _output_option(p)

    p = kinds.add_parser("idle", help="CPU per service of an idle mesh, per broker")
    p.set_defaults(func=cmd_idle)
    p.add_argument(
        "--brokers",
        nargs="+",
        choices=list(_KINDS),
        default=list(_KINDS),
        help="brokers to start, one after the other (default: embedded kafka)",
    )
    p.add_argument(
        "--settle", type=float, default=15.0, help="seconds before the window (default: 15)"
    )
    p.add_argument("--window", type=float, default=30.0, help="seconds measured (default: 30)")
    p.add_argument(
        "--log-dir",
        default=".choreo/logs/bench-idle",
        help="folder for the services' logs (default: .choreo/logs/bench-idle)",
    )
    _output_option(p)

    p = kinds.add_parser(
        "watchdog",
        help="the watchdog's labelled corpus: loops caught, false "
        "halts and shifts, steps to verdict, overspend (--live: the scenario "
        "mesh on a broker)",
    )
    p.set_defaults(func=cmd_watchdog)
    p.add_argument(
        "--corpus",
        default=None,
        help="folder of corpus cases (default: the installed corpus, choreo/bench/watchdog_corpus)",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="instead, run the scenario mesh with its watchdog on a real broker and "
        "count the steps each verdict takes to land",
    )
    p.add_argument(
        "--mesh",
        default=str(SCENARIO_MESH),
        help="with --live, the scenario mesh (default: tests/scenarios/mesh.yaml of a checkout)",
    )
    p.add_argument(
        "--log-dir",
        default=".choreo/logs/bench-watchdog",
        help="with --live, folder for the services' logs (default: .choreo/logs/bench-watchdog)",
    )
    _output_option(p)
