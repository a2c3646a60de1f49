"""Commands that talk to a running mesh about traces: submit, result, state, trace, budget,
replay, escalations. Each is argument parsing and a view over choreo.client.Client; the
client, Kafka and the views load when a command runs, not for ``choreo --help``.

Exit codes: 0 success (a completed trace), 1 the mesh or broker did not do what was asked (a
failed or halted trace, a dead-lettered task, a missing record), 2 bad input, 3 the trace is
still running.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from choreo.cli.common import (
    AddCommand,
    UsageError,
    bootstrap_of,
    budget_limit,
    positive,
    with_client,
)
from choreo.observe.settings import Settings
from choreo.schemas import Budget, Envelope, Escalation, Snapshot, Task
from choreo.spec.mesh import load_mesh

if TYPE_CHECKING:
    from choreo.client import Client
    from choreo.local.processes import ProcessGroup

#: Exit status of ``result`` and ``submit --wait`` when the trace has not ended yet.
RUNNING = 3
#: How long the keeper may take to admit or refuse a task before ``submit --wait`` says so.
ADMISSION_S = 30.0
#: How long ``submit`` waits by default for the services of a mesh just started to join
#: their groups (``--join-timeout``).
JOIN_S = 60.0


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
    from choreo.observe import telemetry
    from choreo.observe import terminal as output

    spec = load_mesh(args.mesh)
    task = _task_from_args(args)

    async def submit(client: Client) -> int:
        with output.err.status(output.line(f"checking that mesh {spec.name} runs…")):
            await client.ensure_running(spec, join_s=args.join_timeout)
        telemetry.configure("cli")  # the submit's span starts the task's trace
        try:
            sent = await client.send(task)
        finally:
            telemetry.shutdown()
        output.say("submitted trace ", (sent.trace_id, "cyan"))
        if not args.wait:
            return 0
        within_s = min(ADMISSION_S, args.timeout)
        admission = await client.admission(sent, within_s)
        if admission.status == "dead-lettered":
            output.error(f"the task was not admitted: {admission.reason}")
            return 1
        if admission.status == "unknown":
            output.error(
                f"trace {sent.trace_id}: the keeper neither admitted nor refused the task "
                f"within {within_s:.0f}s; is the keeper running?"
            )
            return 1
        return await show_result(client, sent.trace_id, args.timeout, tree=True)

    return with_client(settings, submit)


async def show_result(
    client: Client,
    trace_id: str,
    timeout_s: float,
    tree: bool,
    group: ProcessGroup | None = None,
    as_json: bool = False,
) -> int:
    """Wait for the trace's terminal record and print it; give up early if services died.

    A trace that has not ended within ``timeout_s`` seconds is reported as running (exit 3) when the
    keeper knows it, else as not found (exit 1).
    """
    from choreo.cli import views
    from choreo.client import ResultTimeout
    from choreo.observe import terminal as output

    deadline = time.monotonic() + timeout_s
    result = None
    with output.err.status(output.line(f"waiting for trace {trace_id}…")):
        while result is None and time.monotonic() < deadline:
            if group is not None and group.failed():
                names = ", ".join(f"{c.name} ({c.log_path})" for c in group.failed())
                output.error(f"services exited: {names}")
                return 1
            try:  # in slices: a service that died is noticed between them
                result = await client.wait(
                    trace_id, min(5.0, max(0.1, deadline - time.monotonic()))
                )
            except ResultTimeout:
                continue
    if result is None:
        return await _not_ended(client, trace_id, as_json)
    if as_json:
        output.show_json(result)
    else:
        output.show(views.result_view(result))
        if tree:
            output.show(views.trace_tree(trace_id, await client.hops(trace_id), result))
    return 0 if result.status == "completed" else 1


async def _not_ended(client: Client, trace_id: str, as_json: bool) -> int:
    """No terminal record: say the trace is running, or that nothing of it exists."""
    from choreo.cli import views
    from choreo.observe import terminal as output

    snapshot = await client.state(trace_id)
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

    async def result(client: Client) -> int:
        return await show_result(client, args.trace, timeout, tree=False, as_json=args.json)

    return with_client(settings, result)


def _authors(steps: Sequence[Envelope], snapshot: Snapshot) -> dict[str, list[str]]:
    """Each field's writers, in the order their applied steps wrote it; a join field's
    arrivals are its writers."""
    applied = set(snapshot.applied)
    authors: dict[str, list[str]] = {}
    for step in steps:
        if step.event_id not in applied:
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
    if args.at is None and args.diff is None:

        async def now(client: Client) -> int:
            snapshot = await client.state(args.trace)
            return _print_state(snapshot, args, await client.steps(args.trace))

        return with_client(settings, now, bootstrap)
    option = "--at" if args.at is not None else "--diff"
    if args.mesh is None:
        raise UsageError(f"choreo state {option}: --mesh is required to replay the outbox")
    spec = load_mesh(args.mesh)

    async def then(client: Client) -> tuple[list[Snapshot], list[Envelope]]:
        return await client.history(args.trace, spec), await client.steps(args.trace)

    versions, steps = with_client(settings, then, bootstrap)
    for version in [args.at] if args.at is not None else args.diff:
        if not 1 <= version <= len(versions):
            raise UsageError(
                f"{option}: trace {args.trace} has versions 1..{len(versions)}, not {version}"
            )
    if args.diff is None:
        return _print_state(versions[args.at - 1], args, steps)
    return _print_diff(args.trace, versions[args.diff[0] - 1], versions[args.diff[1] - 1], args)


def _print_diff(trace_id: str, before: Snapshot, after: Snapshot, args: argparse.Namespace) -> int:
    from choreo.cli import views
    from choreo.observe import terminal as output

    if args.json:
        output.show_json({"trace_id": trace_id, "before": before, "after": after})
        return 0
    heading, sheet, status = views.state_diff(before, after)
    output.show(heading)
    output.show_sheet(sheet)
    if status is not None:
        output.show(status)
    return 0


def _print_state(snapshot: Snapshot, args: argparse.Namespace, steps: Sequence[Envelope]) -> int:
    """One field verbatim (``--field``), the snapshot as JSON, or the table of fields."""
    from choreo.cli import views
    from choreo.observe import terminal as output
    from choreo.schemas.codec import as_text

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
        views.state_sheet(snapshot, _authors(steps, snapshot), width=None if args.full else 80)
    )
    return 0


def cmd_trace(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.cli import views
    from choreo.observe import terminal as output

    found = with_client(settings, lambda client: client.trace(args.trace))
    if args.json:
        output.show_json(
            {
                "trace_id": args.trace,
                "status": found.status,
                "hops": found.hops,
                "conflicts": found.conflicts,
                "joins": found.joins,
                "result": found.result,
            }
        )
        return 0
    output.show(
        views.trace_tree(args.trace, found.hops, found.result, found.conflicts, found.joins)
    )
    return 0


def cmd_budget(args: argparse.Namespace, settings: Settings) -> int:
    """The trace's budget and what is left of it."""
    from choreo.cli import views
    from choreo.observe import terminal as output

    budget = with_client(settings, lambda client: client.budget(args.trace))
    if args.json:
        output.show_json(
            {
                "trace_id": budget.trace_id,
                "status": budget.status,
                "version": budget.version,
                "budget": budget.budget,
                "used": budget.used,
            }
        )
        return 0
    output.show(views.state_heading(budget))
    output.show_sheet(views.budget_sheet(budget))
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild every trace from the outbox in a fresh keeper; exit 1 on any difference."""
    from choreo.cli import views
    from choreo.observe import terminal as output

    spec = load_mesh(args.mesh)
    replay = with_client(settings, lambda client: client.replay(spec))
    output.show_sheet(views.replay_sheet(replay.comparisons, replay.records))
    return 1 if replay.differing else 0


def cmd_escalations(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.cli import views
    from choreo.observe import terminal as output

    bootstrap = bootstrap_of(settings)
    if args.action == "list":
        found = with_client(settings, lambda client: client.escalations(), bootstrap)
        if args.json:
            output.show_json(found)
        else:
            output.show_sheet(views.escalation_sheet(found))
        return 0
    if not args.id or (args.resume is None) == (not args.close):
        raise UsageError(
            "choreo escalations resolve ID: give exactly one of --resume GUIDANCE or --close"
        )

    async def resolve(client: Client) -> Escalation:
        if args.resume is None:
            return await client.close_escalation(args.id)
        return await client.resume(args.id, args.resume)

    updated = with_client(settings, resolve, bootstrap)
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
        "consumer groups (waits up to --join-timeout for them to join)",
    )
    p.add_argument("text", help="the task's input")
    p.add_argument(
        "--join-timeout",
        type=positive,
        default=JOIN_S,
        help="seconds to wait for the mesh's keeper and agents to be live in their consumer "
        f"groups before refusing to send (default: {JOIN_S:.0f}; a mesh just started takes "
        "a few seconds)",
    )
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
