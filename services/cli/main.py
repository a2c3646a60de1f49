"""``choreo``: the command line of Choreo Mesh.

Every subcommand fails fast with a message naming the bad argument or spec field, and exits
non-zero: 2 for bad input, 1 when the mesh or broker did not do what was asked.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aiokafka.errors import KafkaConnectionError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from schemas import Budget, StateConflict, Task
from services.cli import queries, views
from services.cli.launch import create_topics, start_mesh
from services.cli.processes import ProcessGroup
from services.runtime import telemetry
from services.runtime.broker import BrokerError, EmbeddedBroker, broker_session
from services.runtime.llm import ModelConfigError
from services.runtime.settings import Settings, get_settings
from services.runtime.spec import MeshSpec, SpecError, load_mesh
from services.runtime.topics import Topics

console = Console()
err = Console(stderr=True, soft_wrap=True)
REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_MESH = REPO_ROOT / "examples" / "writer-editor" / "mesh.yaml"
DEMO_TASK = "Write a short piece on why event-driven agents need shared, versioned state."


class UsageError(Exception):
    """Bad command-line input; the message says which argument and why."""


def _bootstrap(settings: Settings) -> str:
    if not settings.bootstrap_servers:
        raise UsageError("no broker address: set KAFKA_BOOTSTRAP_SERVERS "
                         "(`choreo up` and `choreo broker` print it)")
    return settings.bootstrap_servers


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


# -- commands ----------------------------------------------------------------------------

def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    broker = EmbeddedBroker(port=args.port).start()
    console.print(f"[bold]embedded broker[/] listening on [cyan]{broker.bootstrap}[/]")
    console.print(f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")
    print(broker.bootstrap, file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    spec = load_mesh(args.mesh)
    created = create_topics(spec, _bootstrap(settings), settings)
    console.print(f"{len(created)} topics created" + (f": {', '.join(created)}" if created
                                                        else " (all existed)"))
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from schemas import export

    out = Path(args.out) if args.out else None
    if args.check:
        stale = export.stale(out) if out else export.stale()
        if stale:
            err.print(f"stale schema files: {', '.join(stale)}; run `choreo schema export`")
            return 1
        console.print("schema files are current")
        return 0
    written = export.write(out) if out else export.write()
    console.print(f"wrote {len(written)} files")
    return 0


def cmd_model_server(args: argparse.Namespace, settings: Settings) -> int:
    from services.model_server.server import serve

    serve(Path(args.script), host=args.host, port=args.port)
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Run one service in the foreground: what a container runs."""
    if args.service == "sandbox":
        from services.sandbox.__main__ import main as sandbox_main

        sandbox_main([*(["--socket", args.socket] if args.socket else []),
                      *(["--port", str(args.port)] if args.port is not None else [])])
        return 0
    if args.mesh is None:
        raise UsageError(f"choreo run {args.service}: --mesh is required")
    spec = load_mesh(args.mesh)
    if args.service == "agent":  # a bad name fails before any broker is contacted
        if not args.agent:
            raise UsageError("choreo run agent: --agent NAME is required (agents: "
                             f"{', '.join(a.name for a in spec.agents)})")
        spec.agent(args.agent)
    bootstrap = _bootstrap(settings)
    create_topics(spec, bootstrap, settings)
    if args.service == "keeper":
        from services.keeper.service import run as run_keeper

        run_keeper(spec, bootstrap, settings)
    elif args.service == "agent":
        from services.agent.service import run as run_agent

        run_agent(spec, args.agent, bootstrap, settings)
    elif args.service == "watchdog":
        from services.watchdog.app import run as run_watchdog

        run_watchdog(spec, bootstrap, settings)
    return 0


def _status_table(spec: MeshSpec, bootstrap: str, group: ProcessGroup) -> Table:
    table = Table(title=f"mesh {spec.name} on {bootstrap}  (Ctrl-C stops everything)")
    for column in ("service", "pid", "status", "log"):
        table.add_column(column)
    for child in group.children:
        style = "green" if child.status == "running" else "red"
        table.add_row(child.name, str(child.pid), f"[{style}]{child.status}[/]",
                      str(child.log_path))
    return table


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    spec = load_mesh(args.mesh)
    signal.signal(signal.SIGTERM, _interrupt)  # a supervisor's stop is Ctrl-C: no orphans
    with broker_session() as broker:
        console.print(f"broker ({broker.kind}): [cyan]{broker.bootstrap}[/]   "
                      f"export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")
        with start_mesh(spec, Path(args.mesh), broker.bootstrap, settings,
                        Path(args.log_dir), watchdog=not args.no_watchdog) as group:
            try:
                with Live(_status_table(spec, broker.bootstrap, group), console=console,
                          refresh_per_second=1) as live:
                    while True:
                        time.sleep(1)
                        live.update(_status_table(spec, broker.bootstrap, group))
            except KeyboardInterrupt:
                console.print("stopping…")
    console.print("all services stopped")
    return 0


def _task_from_args(args: argparse.Namespace) -> Task:
    budget = Budget(max_hops=args.max_hops, max_tokens=args.max_tokens, max_cost=args.max_cost,
                    max_seconds=args.max_seconds)
    has_budget = any(v is not None for v in (args.max_hops, args.max_tokens, args.max_cost,
                                             args.max_seconds))
    return Task(input=args.text, trace_id=args.trace_id, budget=budget if has_budget else None)


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    spec = load_mesh(args.mesh)
    bootstrap = _bootstrap(settings)
    create_topics(spec, bootstrap, settings)
    topics = Topics(settings.topic_prefix)
    telemetry.configure("cli")  # the submit's span starts the task's trace
    try:
        trace_id = asyncio.run(queries.submit(bootstrap, topics.tasks, _task_from_args(args)))
    finally:
        telemetry.shutdown()
    console.print(f"submitted trace [cyan]{trace_id}[/]")
    if not args.wait:
        return 0
    return _show_result(bootstrap, settings, trace_id, args.timeout, tree=True)


def _show_result(bootstrap: str, settings: Settings, trace_id: str, timeout: float,
                 tree: bool, group: ProcessGroup | None = None) -> int:
    """Wait for the trace's terminal record and print it; give up early if services died."""
    topics = Topics(settings.topic_prefix)
    deadline = time.monotonic() + timeout
    result = None
    with console.status(f"waiting for trace {trace_id}…"):
        while result is None and time.monotonic() < deadline:
            if group is not None and group.failed():
                names = ", ".join(f"{c.name} ({c.log_path})" for c in group.failed())
                err.print(f"services exited: {names}")
                return 1
            result = asyncio.run(queries.wait_for_result(
                bootstrap, settings, topics.results, trace_id,
                min(5.0, max(0.1, deadline - time.monotonic()))))
    if result is None:
        err.print(f"no result for trace {trace_id} within {timeout:.0f}s")
        return 1
    console.print(views.result_panel(result))
    if tree:
        hops = asyncio.run(queries.hops(bootstrap, settings, topics.hops, trace_id))
        console.print(views.trace_tree(trace_id, hops, result))
    return 0 if result.status == "completed" else 1


def cmd_result(args: argparse.Namespace, settings: Settings) -> int:
    timeout = args.timeout if args.wait else 2.0
    return _show_result(_bootstrap(settings), settings, args.trace, timeout, tree=False)


def cmd_state(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = _bootstrap(settings)
    topics = Topics(settings.topic_prefix)
    if args.at is None and args.diff is None:
        snapshot = asyncio.run(queries.latest_snapshot(bootstrap, settings, topics.state,
                                                       args.trace))
        console.print(views.state_table(snapshot))
        return 0
    option = "--at" if args.at is not None else "--diff"
    if args.mesh is None:
        raise UsageError(f"choreo state {option}: --mesh is required to replay the outbox")
    from services.keeper.replay import history

    spec = load_mesh(args.mesh)
    records = asyncio.run(queries.trace_records(bootstrap, settings, topics.outbox, args.trace))
    versions = history(spec, topics, records, args.trace)
    if not versions:
        raise queries.TraceNotFound(f"no outbox record of trace {args.trace!r}")
    wanted = [args.at] if args.at is not None else args.diff
    for version in wanted:
        if not 1 <= version <= len(versions):
            raise UsageError(f"{option}: trace {args.trace} has versions 1..{len(versions)}, "
                             f"not {version}")
    if args.diff is not None:
        before, after = (versions[v - 1] for v in args.diff)
        console.print(views.state_diff(before, after))
    else:
        console.print(views.state_table(versions[args.at - 1]))
    return 0


def cmd_trace(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = _bootstrap(settings)
    topics = Topics(settings.topic_prefix)
    hops = asyncio.run(queries.hops(bootstrap, settings, topics.hops, args.trace))
    result = asyncio.run(queries.wait_for_result(bootstrap, settings, topics.results,
                                                 args.trace, 1.0))
    if not hops and result is None:
        raise queries.TraceNotFound(f"no hop or result record of trace {args.trace!r}")
    conflicts = asyncio.run(queries.trace_typed(bootstrap, settings, topics.conflicts,
                                                args.trace, StateConflict))
    console.print(views.trace_tree(args.trace, hops, result, conflicts))
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild every trace from the outbox in a fresh keeper; exit 1 on any difference."""
    from schemas import Snapshot, decode
    from services.keeper.replay import compare, latest
    from services.runtime.kafka import read_topic

    spec = load_mesh(args.mesh)
    bootstrap = _bootstrap(settings)
    topics = Topics(settings.topic_prefix)
    states = asyncio.run(read_topic(bootstrap, settings, topics.state))  # before the outbox
    live = latest(decode(r.value, Snapshot) for r in states if r.value)
    outbox = asyncio.run(read_topic(bootstrap, settings, topics.outbox))
    comparisons = compare(spec, topics, outbox, live)
    console.print(views.replay_table(comparisons, len(outbox)))
    return 1 if any(c.differences for c in comparisons) else 0


def cmd_escalations(args: argparse.Namespace, settings: Settings) -> int:
    from services.cli import escalations

    bootstrap = _bootstrap(settings)
    if args.action == "list":
        console.print(views.escalation_table(asyncio.run(escalations.current(bootstrap,
                                                                             settings))))
        return 0
    if not args.id or (args.resume is None) == (not args.close):
        raise UsageError("choreo escalations resolve ID: give exactly one of "
                         "--resume GUIDANCE or --close")
    updated = asyncio.run(escalations.resolve(bootstrap, settings, args.id,
                                              guidance=args.resume))
    if updated.continuation_trace_id:
        console.print(f"resumed: continuation trace [cyan]{updated.continuation_trace_id}[/] "
                      f"starts from {updated.trace_id}'s last state")
    else:
        console.print(f"closed escalation {updated.escalation_id}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    mesh_path = Path(args.mesh)
    spec = load_mesh(mesh_path)
    console.rule(f"[bold]Choreo Mesh demo[/]: {spec.name} (scripted model, offline)")
    with broker_session() as broker:
        console.print(f"broker ({broker.kind}) at {broker.bootstrap}")
        with console.status("starting keeper and agents…"):
            group = start_mesh(spec, mesh_path, broker.bootstrap, settings, Path(args.log_dir),
                               watchdog=False)
        with group:
            topics = Topics(settings.topic_prefix)
            task = Task(input=args.text)
            trace_id = asyncio.run(queries.submit(broker.bootstrap, topics.tasks, task))
            console.print(f"task submitted as trace [cyan]{trace_id}[/]: {args.text}")
            return _show_result(broker.bootstrap, settings, trace_id, args.timeout, tree=True,
                                group=group)


def cmd_bench_hop(args: argparse.Namespace, settings: Settings) -> int:
    from services.bench import hop
    from services.bench.stats import write_section

    with broker_session() as broker:
        result = hop.run(broker.bootstrap, args.traces, args.chain)
        kind = broker.kind
    command = f"choreo bench hop --traces {args.traces} --chain {args.chain}"
    body = hop.report(result, command, kind)
    write_section(Path(args.out), "Hop", body)
    print(body)
    console.print(f"written to {args.out}")
    return 0


def cmd_bench_state(args: argparse.Namespace, settings: Settings) -> int:
    from services.bench import state
    from services.bench.stats import write_section

    with broker_session() as broker:
        result = state.run(broker.bootstrap, settings, args.folds, args.traces)
        kind = broker.kind
    command = f"choreo bench state --folds {args.folds} --traces {args.traces}"
    body = state.report(result, command, kind)
    write_section(Path(args.out), "State", body)
    print(body)
    console.print(f"written to {args.out}")
    return 0


def cmd_bench_watchdog(args: argparse.Namespace, settings: Settings) -> int:
    from services.bench import watchdog
    from services.bench.stats import write_section

    with broker_session() as broker:
        rows = watchdog.run(broker.bootstrap, Path(args.log_dir), Path(args.mesh))
        kind = broker.kind
    body = watchdog.report(rows, "choreo bench watchdog", kind)
    write_section(Path(args.out), "Watchdog", body)
    print(body)
    console.print(f"written to {args.out}")
    return 0


# -- parser ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="choreo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace, Settings], int],
            help_text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(func=func)
        return command

    p = add("broker", cmd_broker, "start the embedded Kafka-compatible broker")
    p.add_argument("--port", type=int, default=None, help="port (default: a free one)")

    p = add("topics", cmd_topics, "create every topic a mesh needs")
    p.add_argument("--mesh", required=True)

    p = add("schema", cmd_schema, "export the wire contract (JSON Schema + AsyncAPI)")
    p.add_argument("action", choices=["export"])
    p.add_argument("--out", default=None, help="folder (default: schemas/json)")
    p.add_argument("--check", action="store_true", help="fail if the files are stale")

    p = add("model-server", cmd_model_server, "serve a scripted model over the OpenAI API")
    p.add_argument("script")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)

    p = add("run", cmd_run, "run one service in the foreground (what a container runs)")
    p.add_argument("service", choices=["keeper", "agent", "watchdog", "sandbox"])
    p.add_argument("--mesh", default=None)
    p.add_argument("--agent", default=None)
    p.add_argument("--socket", default=None, help="sandbox: Unix socket path")
    p.add_argument("--port", type=int, default=None, help="sandbox: TCP port on loopback")

    p = add("up", cmd_up, "start every service of a mesh as its own process")
    p.add_argument("mesh")
    p.add_argument("--log-dir", default=".choreo/logs")
    p.add_argument("--no-watchdog", action="store_true")

    p = add("submit", cmd_submit, "submit a task to a mesh")
    p.add_argument("mesh")
    p.add_argument("text")
    p.add_argument("--wait", action="store_true", help="wait for and print the result")
    p.add_argument("--timeout", type=_positive, default=120.0)
    p.add_argument("--trace-id", default=None)
    p.add_argument("--max-hops", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--max-cost", type=float, default=None)
    p.add_argument("--max-seconds", type=_positive, default=None)

    p = add("result", cmd_result, "print a trace's terminal record")
    p.add_argument("trace")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=_positive, default=120.0)

    p = add("state", cmd_state, "show a trace's state, now or at any version")
    p.add_argument("trace")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--at", type=int, default=None,
                      help="version to show (replays the outbox)")
    when.add_argument("--diff", type=int, nargs=2, default=None, metavar=("A", "B"),
                      help="what changed from version A to version B (replays the outbox)")
    p.add_argument("--mesh", default=None, help="mesh spec, needed with --at and --diff")

    p = add("trace", cmd_trace, "show a trace as a tree of steps, with its state conflicts")
    p.add_argument("trace")

    p = add("replay", cmd_replay,
            "rebuild every trace from the outbox and compare with the live snapshots")
    p.add_argument("--mesh", required=True)

    bench = sub.add_parser("bench", help="measure the mesh on a real broker",
                           description="measure the mesh on a real broker")
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    p = bench_sub.add_parser("hop", help="per-step overhead vs a raw Kafka relay")
    p.set_defaults(func=cmd_bench_hop)
    p.add_argument("--traces", type=int, default=200)
    p.add_argument("--chain", type=int, default=4)
    p.add_argument("--out", default=str(REPO_ROOT / "docs" / "BENCHMARKS.md"))
    p = bench_sub.add_parser("state", help="folds per second and outbox replay rate")
    p.set_defaults(func=cmd_bench_state)
    p.add_argument("--folds", type=int, default=50_000, help="deltas folded in-process")
    p.add_argument("--traces", type=int, default=1000, help="traces written to a real outbox")
    p.add_argument("--out", default=str(REPO_ROOT / "docs" / "BENCHMARKS.md"))

    p = bench_sub.add_parser("watchdog",
                             help="steps a loop still runs before each verdict, per scenario")
    p.set_defaults(func=cmd_bench_watchdog)
    p.add_argument("--mesh", default=str(REPO_ROOT / "tests" / "scenarios" / "mesh.yaml"))
    p.add_argument("--log-dir", default=".choreo/logs/bench-watchdog")
    p.add_argument("--out", default=str(REPO_ROOT / "docs" / "BENCHMARKS.md"))

    p = add("escalations", cmd_escalations, "list halted traces handed to a human, resolve them")
    p.add_argument("action", nargs="?", choices=["list", "resolve"], default="list")
    p.add_argument("id", nargs="?", help="escalation id (with resolve)")
    p.add_argument("--resume", default=None, metavar="GUIDANCE",
                   help="continue in a new trace from the halted state, with this guidance")
    p.add_argument("--close", action="store_true", help="end the escalation without resuming")

    p = add("demo", cmd_demo, "broker + writer-editor mesh + one task, printed")
    p.add_argument("--mesh", default=str(DEMO_MESH))
    p.add_argument("--text", default=DEMO_TASK)
    p.add_argument("--timeout", type=_positive, default=180.0)
    p.add_argument("--log-dir", default=".choreo/logs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
        code: int = args.func(args, settings)
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
