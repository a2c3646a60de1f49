"""What the CLI prints: trees and tables a person can read at a glance."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from schemas import HopRecord, Snapshot, TerminalResult
from schemas.codec import to_json

_STATUS_STYLE = {"ok": "green", "completed": "green", "failed": "red", "refused": "yellow",
                 "halted": "yellow", "running": "cyan"}


def short(value: Any, width: int = 80) -> str:
    text = value if isinstance(value, str) else to_json(value).decode()
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def result_panel(result: TerminalResult) -> Panel:
    style = _STATUS_STYLE.get(result.status, "white")
    usage = result.usage
    lines = [
        Text.assemble(("status  ", "bold"), (result.status, style)),
        Text.assemble(("usage   ", "bold"), f"{usage.hops} steps, {usage.tokens_in} tokens in, "
                      f"{usage.tokens_out} out, ${usage.cost:.6f}"),
    ]
    if result.reason:
        lines.append(Text.assemble(("reason  ", "bold"), result.reason))
    output = result.output if isinstance(result.output, str) else to_json(result.output).decode()
    body = Group(*lines, Text(""), Text(output or "(no output)"))
    return Panel(body, title=f"result of trace {result.trace_id}", border_style=style)


def trace_tree(trace_id: str, hops: list[HopRecord], result: TerminalResult | None) -> Tree:
    """Steps nested under the step that caused them; the root is the task."""
    status = result.status if result else "running"
    root = Tree(Text.assemble(("trace ", "bold"), trace_id, "  ",
                              (status, _STATUS_STYLE.get(status, "white"))))
    children: dict[str | None, list[HopRecord]] = defaultdict(list)
    ids = {hop.event_id for hop in hops}
    for hop in sorted(hops, key=lambda h: (h.state_version, h.hop)):
        parent = hop.causation_id if hop.causation_id in ids else None
        children[parent].append(hop)

    def grow(node: Tree, parent: str | None) -> None:
        for hop in children.get(parent, []):
            grow(node.add(_hop_label(hop)), hop.event_id)

    grow(root, None)
    if result is not None and result.reason:
        root.add(Text(f"reason: {result.reason}", style="italic"))
    return root


def _hop_label(hop: HopRecord) -> Text:
    usage = hop.usage
    return Text.assemble(
        (f"{hop.agent}", "bold"), f"  hop {hop.hop}  ",
        (hop.status, _STATUS_STYLE.get(hop.status, "white")),
        f"  {hop.duration_ms:.0f} ms  {usage.tokens_in}→{usage.tokens_out} tok  "
        f"${usage.cost:.6f}  v{hop.state_version}  → {hop.type}",
        ("  " + short(hop.output, 60)) if hop.output else "",
    )


def state_table(snapshot: Snapshot) -> Group:
    """A heading, then each field with its value and who wrote it at which version."""
    heading = Text.assemble(("trace ", "bold"), snapshot.trace_id, f" at version "
                            f"{snapshot.version} ", (snapshot.status,
                                                     _STATUS_STYLE.get(snapshot.status, "")))
    table = Table()
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_column("version", justify="right")
    table.add_column("written by")
    for name in sorted(snapshot.fields):
        write = snapshot.writes.get(name)
        table.add_row(name, short(snapshot.fields[name]),
                      str(write.version) if write else "", write.agent if write else "")
    return Group(heading, table)
