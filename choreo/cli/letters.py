"""``choreo dlq``: the records the mesh refused, why, and their exact bytes.

Every consumer of the mesh sends a record it cannot accept to the dead-letter topic with the
reason; this is where an operator finds out why a task vanished. A dead letter's id is its
place on the dead-letter topic, ``PARTITION:OFFSET``.
"""

from __future__ import annotations

import argparse
import asyncio

from choreo.cli import views
from choreo.cli.common import AddCommand, UsageError, bootstrap_of
from choreo.kafka.clients import read_topic
from choreo.observe import terminal as output
from choreo.observe.settings import Settings
from choreo.schemas import DeadLetter, decode
from choreo.schemas.codec import DecodeError
from choreo.schemas.topics import Topics


def letter_id(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"


async def dead_letters(bootstrap: str, settings: Settings) -> list[tuple[str, DeadLetter]]:
    """Every dead letter with its id, oldest first; records that are not dead letters are
    skipped (the topic is written by the mesh only)."""
    topic = Topics(settings.topic_prefix).dlq
    found = []
    for record in await read_topic(bootstrap, settings, topic):
        try:
            letter = decode(record.value or b"", DeadLetter)
        except DecodeError:
            continue
        found.append((letter_id(record.partition, record.offset), letter))
    return sorted(found, key=lambda pair: (pair[1].created_at, pair[0]))


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    letters = asyncio.run(dead_letters(bootstrap_of(settings), settings))
    if args.action == "list":
        if args.trace is not None:
            letters = [(i, d) for i, d in letters if d.key == args.trace]
        if args.json:
            output.show_json([{"id": i, **output.to_builtins(d)} for i, d in letters])
        else:
            output.show_sheet(views.dlq_sheet(letters))
        return 0
    if args.id is None:
        raise UsageError("choreo dlq show ID: give the id `choreo dlq` lists (PARTITION:OFFSET)")
    chosen = dict(letters).get(args.id)
    if chosen is None:
        raise LookupError(
            f"no dead letter {args.id!r} (ids are PARTITION:OFFSET, as `choreo dlq` lists them)"
        )
    if args.json:
        output.show_json({"id": args.id, **output.to_builtins(chosen)})
    else:
        output.show(views.dlq_letter(args.id, chosen))
    return 0


def register(add: AddCommand) -> None:
    p = add("dlq", cmd_dlq, "list dead-lettered records with their reasons, or show one in full")
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "show"],
        default="list",
        help="list (default) or show one",
    )
    p.add_argument("id", nargs="?", help="with show: the dead letter's PARTITION:OFFSET")
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
