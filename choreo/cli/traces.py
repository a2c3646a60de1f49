"""Commands that talk to a running mesh about traces: submit, result, state, trace, budget,
replay, escalations.

Exit codes: 0 success (a completed trace), 1 the mesh or broker did not do what was asked (a
failed or halted trace, a dead-lettered task, a missing record), 2 bad input, 3 the trace is
still running.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from typing import Any

from choreo.cli import views
from choreo.cli.common import AddCommand, UsageError, bootstrap_of, budget_limit, positive
from choreo.client import queries, submission
from choreo.kafka.clients import read_topic
from choreo.local.processes import ProcessGroup
from choreo.observe import telemetry
from choreo.observe import terminal as output
from choreo.observe.settings import Settings
from choreo.schemas import Budget, Envelope, Snapshot, StateConflict, Task
from choreo.schemas.codec import as_text
from choreo.schemas.topics import Topics
from choreo.spec.mesh import load_mesh

#: Exit status of ``result`` and ``submit --wait`` when the trace has not ended yet.
RUNNING = 3
#: How long the keeper may take to admit or refuse a task before ``submit --wait`` says so.
ADMISSION_S = 30.0


def _task_from_args(args: argparse.Namespace) -> Task:
    budget = Budget(
        max_hops=args.max_hops,
        max_tokens=args.max_tokens,
        max_cost=args.max_cost,
        max_seconds=args.max_seconds,
    )
    return Task(
        input=args.text, trace_id=args.trace_id, budget=budget if budget != Budget() else None
    )


def cmd_submit(args: argparse.Namespace, settings: Settings) -> int:
    spec = load_mesh(args.mesh)
    bootstrap = bootstrap_of(settings)
    with output.err.status(output.line(f"checking that mesh {spec.name} runs…")):
        asyncio.run(submission.check_running(spec, bootstrap, settings))
    topics = Topics(settings.topic_prefix)
    telemetry.configure("cli")  # the submit's span starts the task's trace
    try:
        sent = asyncio.run(queries.send_task(bootstrap, topics.tasks, _task_from_args(args)))
    finally:
        telemetry.shutdown()
    output.say("submitted trace ", (sent.trace_id, "cyan"))
    if not args.wait:
        return 0
    fate = asyncio.run(submission.fate(bootstrap, settings, sent, min(ADMISSION_S, args.timeout)))
    if fate.status == "dead-lettered":
        output.error(f"the task was not admitted: {fate.reason}")
        return 1
    if fate.status == "unknown":
        output.error(
            f"trace {sent.trace_id}: the keeper neither admitted nor refused the task "
            f"within {min(ADMISSION_S, args.timeout):.0f}s; is the keeper running?"
        )
        return 1
    return show_result(bootstrap, settings, sent.trace_id, args.timeout, tree=True)


def show_result(
    bootstrap: str,
    settings: Settings,
    trace_id: str,
    timeout: float,
    tree: bool,
    group: ProcessGroup | None = None,
    as_json: bool = False,
) -> int:
    """Wait for the trace's terminal record and print it; give up early if services died.

    A trace that has not ended within ``timeout`` is reported as running (exit 3) when the
    keeper knows it, else as not found (exit 1).
    """
    topics = Topics(settings.topic_prefix)
    deadline = time.monotonic() + timeout
    result = None
    with output.err.status(output.line(f"waiting for trace {trace_id}…")):
        while result is None and time.monotonic() < deadline:
            if group is not None and group.failed():
                names = ", ".join(f"{c.name} ({c.log_path})" for c in group.failed())
                output.error(f"services exited: {names}")
                return 1
            result = asyncio.run(
                queries.wait_for_result(
                    bootstrap,
                    settings,
                    topics.results,
                    trace_id,
                    min(5.0, max(0.1, deadline - time.monotonic())),
                )
            )
    if result is None:
        return _not_ended(bootstrap, settings, trace_id, as_json)
    if as_json:
        output.show_json(result)
    else:
        output.show(views.result_view(result))
        if tree:
            hops = asyncio.run(queries.hops(bootstrap, settings, topics.hops, trace_id))
            output.show(views.trace_tree(trace_id, hops, result))
    return 0 if result.status == "completed" else 1


def _not_ended(bootstrap: str, settings: Settings, trace_id: str, as_json: bool) -> int:
    """No terminal record: say the trace is running, or that nothing of it exists."""
    topics = Topics(settings.topic_prefix)
    snapshot = asyncio.run(queries.latest_snapshot(bootstrap, settings, topics.state, trace_id))
    if as_json:
        output.show_json(
            {
                "trace_id": trace_id,
                "status": snapshot.status,
                "state_version": snapshot.version,
                "totals": snapshot.totals,
            }
        )
    else:
        output.show(views.running_view(snapshot, trace_id))
    return RUNNING


def cmd_result(args: argparse.Namespace, settings: Settings) -> int:
    timeout = args.timeout if args.wait else 2.0
    return show_result(
        bootstrap_of(settings), settings, args.trace, timeout, tree=False, as_json=args.json
    )


def _authors(records: Sequence[Any], snapshot: Snapshot) -> dict[str, list[str]]:
    """Each field's writers, in the order their applied steps wrote it; a join field's
    arrivals are its writers."""
    applied = set(snapshot.applied)
    authors: dict[str, list[str]] = {}
    for record in records:
        step = queries.decoded(record, Envelope)
        if step is None or step.event_id not in applied:
            continue
        for name in step.delta or {}:
            writers = authors.setdefault(name, [])
            if step.source not in writers:
                writers.append(step.source)
    for name, value in snapshot.fields.items():
        if name.startswith("join.") and isinstance(value, list):
            authors[name] = [str(v) for v in value]
    return authors


def cmd_state(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = bootstrap_of(settings)
    topics = Topics(settings.topic_prefix)
    if args.at is None and args.diff is None:
        snapshot = asyncio.run(
            queries.latest_snapshot(bootstrap, settings, topics.state, args.trace)
        )
        return _print_state(
            snapshot,
            args,
            asyncio.run(queries.trace_records(bootstrap, settings, topics.outbox, args.trace)),
        )
    option = "--at" if args.at is not None else "--diff"
    if args.mesh is None:
        raise UsageError(f"choreo state {option}: --mesh is required to replay the outbox")
    from choreo.keeper.replay import history

    spec = load_mesh(args.mesh)
    records = asyncio.run(queries.trace_records(bootstrap, settings, topics.outbox, args.trace))
    versions = history(spec, topics, records, args.trace)
    if not versions:
        raise queries.TraceNotFound(f"no outbox record of trace {args.trace!r}")
    wanted = [args.at] if args.at is not None else args.diff
    for version in wanted:
        if not 1 <= version <= len(versions):
            raise UsageError(
                f"{option}: trace {args.trace} has versions 1..{len(versions)}, not {version}"
            )
    if args.diff is None:
        return _print_state(versions[args.at - 1], args, records)
    before, after = (versions[v - 1] for v in args.diff)
    if args.json:
        output.show_json({"trace_id": args.trace, "before": before, "after": after})
        return 0
    heading, sheet, status = views.state_diff(before, after)
    output.show(heading)
    output.show_sheet(sheet)
    if status is not None:
        output.show(status)
    return 0


def _print_state(snapshot: Snapshot, args: argparse.Namespace, records: Sequence[Any]) -> int:
    """One field verbatim (``--field``), the snapshot as JSON, or the table of fields."""
    if args.field is not None:
        if args.field not in snapshot.fields:
            known = ", ".join(sorted(snapshot.fields))
            raise LookupError(
                f"trace {snapshot.trace_id} at version {snapshot.version} has no "
                f"field {args.field!r} (fields: {known})"
            )
        value = snapshot.fields[args.field]
        if args.json:
            output.show_json(value)
        else:
            output.show(output.line(as_text(value)))
        return 0
    if args.json:
        output.show_json(snapshot)
        return 0
    output.show(views.state_heading(snapshot))
    output.show_sheet(
        views.state_sheet(snapshot, _authors(records, snapshot), width=None if args.full else 80)
    )
    return 0


def cmd_trace(args: argparse.Namespace, settings: Settings) -> int:
    bootstrap = bootstrap_of(settings)
    topics = Topics(settings.topic_prefix)
    hops = asyncio.run(queries.hops(bootstrap, settings, topics.hops, args.trace))
    result = asyncio.run(
        queries.wait_for_result(bootstrap, settings, topics.results, args.trace, 1.0)
    )
    if not hops and result is None:
        raise queries.TraceNotFound(f"no hop or result record of trace {args.trace!r}")
    conflicts = asyncio.run(
        queries.trace_typed(bootstrap, settings, topics.conflicts, args.trace, StateConflict)
    )
    joins = _joins(bootstrap, settings, topics, args.trace)
    if args.json:
        output.show_json(
            {
                "trace_id": args.trace,
                "status": result.status if result else "running",
                "hops": hops,
                "conflicts": conflicts,
                "joins": joins,
                "result": result,
            }
        )
        return 0
    output.show(views.trace_tree(args.trace, hops, result, conflicts, joins))
    return 0


def _joins(
    bootstrap: str, settings: Settings, topics: Topics, trace_id: str
) -> dict[str, list[str]]:
    """Each join's arrivals, in arrival order, from the trace's latest snapshot (a join's
    field is not scratch: an ended trace keeps it)."""
    try:
        snapshot = asyncio.run(queries.latest_snapshot(bootstrap, settings, topics.state, trace_id))
    except queries.TraceNotFound:
        return {}
    return {
        name.removeprefix("join."): [str(a) for a in value]
        for name, value in snapshot.fields.items()
        if name.startswith("join.") and isinstance(value, list)
    }


def cmd_budget(args: argparse.Namespace, settings: Settings) -> int:
    """The trace's budget and what is left of it."""
    bootstrap = bootstrap_of(settings)
    topics = Topics(settings.topic_prefix)
    snapshot = asyncio.run(queries.latest_snapshot(bootstrap, settings, topics.state, args.trace))
    if args.json:
        output.show_json(
            {
                "trace_id": snapshot.trace_id,
                "status": snapshot.status,
                "version": snapshot.version,
                "budget": snapshot.budget,
                "used": snapshot.totals,
            }
        )
        return 0
    output.show(views.state_heading(snapshot))
    output.show_sheet(views.budget_sheet(snapshot))
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild every trace from the outbox in a fresh keeper; exit 1 on any difference."""
    from choreo.keeper.replay import compare, latest

    spec = load_mesh(args.mesh)
    bootstrap = bootstrap_of(settings)
    topics = Topics(settings.topic_prefix)
    states = asyncio.run(read_topic(bootstrap, settings, topics.state))  # before the outbox
    live = latest(s for r in states if (s := queries.decoded(r, Snapshot)) is not None)
    outbox = asyncio.run(read_topic(bootstrap, settings, topics.outbox))
    comparisons = compare(spec, topics, outbox, live)
    output.show_sheet(views.replay_sheet(comparisons, len(outbox)))
    return 1 if any(c.differences for c in comparisons) else 0


def cmd_escalations(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.client import escalations

    bootstrap = bootstrap_of(settings)
    if args.action == "list":
        found = asyncio.run(escalations.current(bootstrap, settings))
        if args.json:
            output.show_json(found)
        else:
            output.show_sheet(views.escalation_sheet(found))
        return 0
    if not args.id or (args.resume is None) == (not args.close):
        raise UsageError(
            "choreo escalations resolve ID: give exactly one of --resume GUIDANCE or --close"
        )
    updated = asyncio.run(escalations.resolve(bootstrap, settings, args.id, guidance=args.resume))
    if updated.continuation_trace_id:
        output.say(
            "resumed: continuation trace ",
            (updated.continuation_trace_id, "cyan"),
            f" starts from {updated.trace_id}'s last state",
        )
    else:
        output.say(f"closed escalation {updated.escalation_id}")
    return 0


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the records as JSON instead of a table (default: off)",
    )


def register(add: AddCommand) -> None:
    p = add("submit", cmd_submit, "submit a task to a running mesh")
    p.add_argument(
        "mesh",
        help="the mesh spec (YAML) of the running mesh: its topics must "
        "exist under CHOREO_TOPIC_PREFIX, and its keeper and agents be live in their "
        "consumer groups (waits up to "
        f"{submission.JOIN_S:.0f} s for them to join)",
    )
    p.add_argument("text", help="the task's input")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until this task is admitted or refused, then for its result "
        "(default: return once sent)",
    )
    p.add_argument(
        "--timeout", type=positive, default=120.0, help="seconds to wait with --wait (default: 120)"
    )
    p.add_argument(
        "--trace-id",
        default=None,
        help="trace id of the task (default: a new random id); an id already used "
        "is refused by the keeper",
    )
    p.add_argument(
        "--max-hops",
        type=budget_limit("max_hops"),
        default=None,
        help="most steps the trace may take, at least 1 (default: the spec's)",
    )
    p.add_argument(
        "--max-tokens",
        type=budget_limit("max_tokens"),
        default=None,
        help="most model tokens, in and out, at least 1 (default: the spec's)",
    )
    p.add_argument(
        "--max-cost",
        type=budget_limit("max_cost"),
        default=None,
        help="most model cost in US dollars, 0 or more (default: the spec's)",
    )
    p.add_argument(
        "--max-seconds",
        type=budget_limit("max_seconds"),
        default=None,
        help="most wall-clock seconds from admission, above 0 (default: the spec's)",
    )

    p = add("result", cmd_result, "print a trace's terminal record (exit 3 while it runs)")
    p.add_argument("trace", help="trace id")
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait for the trace to end (default: look for 2 seconds)",
    )
    p.add_argument(
        "--timeout", type=positive, default=120.0, help="seconds to wait with --wait (default: 120)"
    )
    _json_option(p)

    p = add("state", cmd_state, "show a trace's state, now or at any version")
    p.add_argument("trace", help="trace id")
    when = p.add_mutually_exclusive_group()
    when.add_argument(
        "--at",
        type=int,
        default=None,
        help="version to show, from 1 (replays the outbox; default: the latest)",
    )
    when.add_argument(
        "--diff",
        type=int,
        nargs=2,
        default=None,
        metavar=("A", "B"),
        help="what changed from version A to version B (replays the outbox; default: no diff)",
    )
    p.add_argument(
        "--mesh", default=None, help="mesh spec, needed with --at and --diff (default: none)"
    )
    p.add_argument(
        "--field",
        default=None,
        metavar="NAME",
        help="print one field's value in full, verbatim (default: every field)",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="show values uncut in the table (default: cut at 80 characters)",
    )
    _json_option(p)

    p = add(
        "trace",
        cmd_trace,
        "show a trace as a tree of steps, with its state conflicts and join arrivals",
    )
    p.add_argument("trace", help="trace id")
    _json_option(p)

    p = add("budget", cmd_budget, "show a trace's budget: each limit, what is used, what is left")
    p.add_argument("trace", help="trace id")
    _json_option(p)

    p = add(
        "replay",
        cmd_replay,
        "rebuild every trace from the outbox and compare with the live snapshots",
    )
    p.add_argument("--mesh", required=True, help="the mesh spec (YAML) the traces ran under")

    p = add("escalations", cmd_escalations, "list halted traces handed to a human, resolve them")
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "resolve"],
        default="list",
        help="list (default) or resolve one",
    )
    p.add_argument("id", nargs="?", help="escalation id (with resolve)")
    p.add_argument(
        "--resume",
        default=None,
        metavar="GUIDANCE",
        help="continue in a new trace from the halted state, with this guidance (default: none)",
    )
    p.add_argument("--close", action="store_true", help="end the escalation without resuming")
    _json_option(p)
