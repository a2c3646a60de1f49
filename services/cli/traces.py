"""Commands that talk to a running mesh about traces: submit, result, state, trace, replay,
escalations."""

from __future__ import annotations

import argparse
import asyncio
import time

from choreo.schemas import Budget, Snapshot, StateConflict, Task, decode
from choreo.services.cli import queries, views
from choreo.services.cli.common import AddCommand, UsageError, bootstrap_of, console, err, positive
from choreo.services.cli.launch import create_topics
from choreo.services.cli.processes import ProcessGroup
from choreo.services.runtime import telemetry
from choreo.services.runtime.kafka import read_topic
from choreo.services.runtime.settings import Settings
from choreo.services.runtime.spec import load_mesh
from choreo.services.runtime.topics import Topics


def _task_from_args(args: argparse.Namespace) -> Task:
    budget = Budget(max_hops=args.max_hops, max_tokens=args.max_tokens, max_cost=args.max_cost,
                    max_seconds=args.max_seconds)
    return Task(input=args.text, trace_id=args.trace_id,
                budget=budget if budget != Budget() else None)


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    spec = load_mesh(args.mesh)
    bootstrap = bootstrap_of(settings)
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
    return show_result(bootstrap, settings, trace_id, args.timeout, tree=True)


def show_result(bootstrap: str, settings: Settings, trace_id: str, timeout: float,
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
    return show_result(bootstrap_of(settings), settings, args.trace, timeout, tree=False)


def cmd_state(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = bootstrap_of(settings)
    topics = Topics(settings.topic_prefix)
    if args.at is None and args.diff is None:
        snapshot = asyncio.run(queries.latest_snapshot(bootstrap, settings, topics.state,
                                                       args.trace))
        console.print(views.state_table(snapshot))
        return 0
    option = "--at" if args.at is not None else "--diff"
    if args.mesh is None:
        raise UsageError(f"choreo state {option}: --mesh is required to replay the outbox")
    from choreo.services.keeper.replay import history

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
    bootstrap = bootstrap_of(settings)
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
    from choreo.services.keeper.replay import compare, latest

    spec = load_mesh(args.mesh)
    bootstrap = bootstrap_of(settings)
    topics = Topics(settings.topic_prefix)
    states = asyncio.run(read_topic(bootstrap, settings, topics.state))  # before the outbox
    live = latest(decode(r.value, Snapshot) for r in states if r.value)
    outbox = asyncio.run(read_topic(bootstrap, settings, topics.outbox))
    comparisons = compare(spec, topics, outbox, live)
    console.print(views.replay_table(comparisons, len(outbox)))
    return 1 if any(c.differences for c in comparisons) else 0


def cmd_escalations(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.services.cli import escalations

    bootstrap = bootstrap_of(settings)
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


def register(add: AddCommand) -> None:
    p = add("submit", cmd_submit, "submit a task to a mesh")
    p.add_argument("mesh")
    p.add_argument("text")
    p.add_argument("--wait", action="store_true", help="wait for and print the result")
    p.add_argument("--timeout", type=positive, default=120.0)
    p.add_argument("--trace-id", default=None)
    p.add_argument("--max-hops", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--max-cost", type=float, default=None)
    p.add_argument("--max-seconds", type=positive, default=None)

    p = add("result", cmd_result, "print a trace's terminal record")
    p.add_argument("trace")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=positive, default=120.0)

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

    p = add("escalations", cmd_escalations, "list halted traces handed to a human, resolve them")
    p.add_argument("action", nargs="?", choices=["list", "resolve"], default="list")
    p.add_argument("id", nargs="?", help="escalation id (with resolve)")
    p.add_argument("--resume", default=None, metavar="GUIDANCE",
                   help="continue in a new trace from the halted state, with this guidance")
    p.add_argument("--close", action="store_true", help="end the escalation without resuming")
