"""``choreo bench``: each benchmark runs on a real broker and writes its section of
docs/BENCHMARKS.md together with the command that produced it."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from choreo.services.bench.stats import write_section
from choreo.services.cli.common import REPO_ROOT, console
from choreo.services.runtime.broker import BrokerHandle, broker_session
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
    from choreo.services.bench import corpus, watchdog

    if args.live:
        return _publish("Watchdog", args.out, lambda broker: watchdog.report(
            watchdog.run(broker.bootstrap, Path(args.log_dir), Path(args.mesh)),
            "choreo bench watchdog --live", broker.kind))
    outcomes = corpus.run_corpus(corpus.load_cases(Path(args.corpus or corpus.CORPUS)))
    body = watchdog.corpus_report(outcomes, "choreo bench watchdog")
    write_section(Path(args.out), "Watchdog corpus", body)
    print(body)
    console.print(f"written to {args.out}")
    return 0 if watchdog.calibration(outcomes).on_target else 1


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

    p = kinds.add_parser("watchdog", help="the watchdog's labelled corpus: loops caught, false "
                         "halts and shifts, steps to verdict, overspend (--live: the scenario "
                         "mesh on a broker)")
    p.set_defaults(func=cmd_watchdog)
    p.add_argument("--corpus", default=None, help="folder of corpus cases (default: the "
                   "installed corpus, services/bench/watchdog_corpus)")
    p.add_argument("--live", action="store_true",
                   help="instead, run the scenario mesh with its watchdog on a real broker and "
                   "count the steps each verdict takes to land")
    p.add_argument("--mesh", default=str(REPO_ROOT / "tests" / "scenarios" / "mesh.yaml"))
    p.add_argument("--log-dir", default=".choreo/logs/bench-watchdog")
    p.add_argument("--out", default=str(BENCHMARKS))
