"""``choreo dlq``: the records the mesh refused, why, and their exact bytes.

Every consumer of the mesh sends a record it cannot accept to the dead-letter topic with the
reason; this is where an operator finds out why a task vanished. A dead letter's id is its
place on the dead-letter topic, ``PARTITION:OFFSET``. ``choreo dlq requeue ID`` sends one back
to the topic it was refused from (``--file``: fixed bytes instead). A view over
choreo.client.Client.dlq and Client.requeue.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from choreo.cli.common import AddCommand, UsageError, with_client
from choreo.observe.settings import Settings


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from choreo.cli import views
    from choreo.observe import terminal as output

    if args.action == "requeue":
        return _requeue(args, settings)
    trace = args.trace if args.action == "list" else None
    letters = with_client(settings, lambda client: client.dlq(trace))
    if args.action == "list":
        if args.json:
            output.show_json([{"id": e.id, **output.to_builtins(e.letter)} for e in letters])
        else:
            output.show_sheet(views.dlq_sheet([(e.id, e.letter) for e in letters]))
        return 0
    if args.id is None:
        raise UsageError("choreo dlq show ID: give the id `choreo dlq` lists (PARTITION:OFFSET)")
    chosen = {e.id: e.letter for e in letters}.get(args.id)
    if chosen is None:
        raise LookupError(
            f"no dead letter {args.id!r} (ids are PARTITION:OFFSET, as `choreo dlq` lists them)"
        )
    if args.json:
        output.show_json({"id": args.id, **output.to_builtins(chosen)})
    else:
        output.show(views.dlq_letter(args.id, chosen))
    return 0


def _requeue(args: argparse.Namespace, settings: Settings) -> int:
    """Send a dead letter back to its topic: its original bytes, or the file's (fixed)."""
    from choreo.observe import terminal as output

    if args.id is None:
        raise UsageError("choreo dlq requeue ID: give the id `choreo dlq` lists (PARTITION:OFFSET)")
    value = None
    if args.file is not None:
        try:
            value = Path(args.file).read_bytes()
        except OSError as exc:
            raise UsageError(f"--file: cannot read {args.file}: {exc.strerror}") from None
    sent = with_client(settings, lambda client: client.requeue(args.id, value))
    output.say(
        f"requeued dead letter {args.id} to {sent.topic} partition {sent.partition} "
        f"offset {sent.offset}"
    )
    return 0


def register(add: AddCommand) -> None:
    p = add("dlq", cmd_dlq, "list dead-lettered records with their reasons, or show one in full")
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "show", "requeue"],
        default="list",
        help="list (default), show one, or requeue one: send it back to its topic",
    )
    p.add_argument(
        "id", nargs="?", help="with show and requeue: the dead letter's PARTITION:OFFSET"
    )
    p.add_argument(
        "--file",
        default=None,
        metavar="PATH",
        help="with requeue: send this file's bytes (the record fixed) instead of the "
        "original (default: the original bytes)",
    )
    p.add_argument(
        "--trace",
        default=None,
        metavar="ID",
        help="with list: only the records keyed by this trace id (default: all)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the records as JSON, original bytes in base64 (default: off)",
    )
