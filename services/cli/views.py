"""What the CLI prints: trees and tables a person can read at a glance."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from choreo.schemas import Escalation, HopRecord, Snapshot, StateConflict, TerminalResult, Totals
from choreo.schemas.codec import as_text

if TYPE_CHECKING:
    from choreo.services.keeper.replay import Comparison

_STATUS_STYLE = {"ok": "green", "completed": "green", "failed": "red", "refused": "yellow",
                 "halted": "yellow", "running": "cyan"}


def short(value: Any, width: int = 80) -> str:
    text = " ".join(as_text(value).split())
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
    if usage.by_agent:
        lines.append(Text.assemble(("agents  ", "bold"), ", ".join(
            f"{name} {t.steps} steps ${t.cost:.6f}" for name, t in sorted(usage.by_agent.items()))))
    body = Group(*lines, Text(""), Text(as_text(result.output) or "(no output)"))
    return Panel(body, title=f"result of trace {result.trace_id}", border_style=style)


def trace_tree(trace_id: str, hops: list[HopRecord], result: TerminalResult | None,
               conflicts: Sequence[StateConflict] = ()) -> Tree:
    """Steps in causal order; the flow nests only where a step caused several (fan-out), so a
    chain reads as a list. State conflicts follow, each with both writers, both values and
    the policy that chose between them."""
    status = result.status if result else "running"
    root = Tree(Text.assemble(("trace ", "bold"), trace_id, "  ",
                              (status, _STATUS_STYLE.get(status, "white"))))
    children: dict[str | None, list[HopRecord]] = defaultdict(list)
    ids = {hop.event_id for hop in hops}
    for hop in sorted(hops, key=lambda h: (h.state_version, h.hop)):
        parent = hop.causation_id if hop.causation_id in ids else None
        children[parent].append(hop)

    def grow(node: Tree, parent: str | None) -> None:
        caused = children.get(parent, [])
        if len(caused) == 1:  # a chain continues at the same depth
            _tool_calls(node.add(_hop_label(caused[0])), caused[0])
            grow(node, caused[0].event_id)
            return
        for hop in caused:  # a fork: one branch per step
            branch = node.add(_hop_label(hop))
            _tool_calls(branch, hop)
            grow(branch, hop.event_id)

    grow(root, None)
    if conflicts:
        branch = root.add(Text(f"{len(conflicts)} state conflicts", style="bold yellow"))
        for conflict in sorted(conflicts, key=lambda c: (c.version, c.field)):
            branch.add(_conflict_label(conflict))
    if result is not None and result.reason:
        root.add(Text(f"reason: {result.reason}", style="italic"))
    latest = max(hops, key=lambda h: h.state_version, default=None)
    totals = result.usage if result is not None else latest.totals if latest else None
    if totals is not None:
        root.add(totals_text(totals))
    return root


def totals_text(totals: Totals) -> Text:
    """The trace's totals, then each agent's share: who spent what."""
    parts = [f"total: {totals.hops} steps, {totals.tokens_in}→{totals.tokens_out} tok, "
             f"${totals.cost:.6f}"]
    parts += [f"{name} {t.steps} steps ${t.cost:.6f}"
              for name, t in sorted(totals.by_agent.items())]
    return Text("  |  ".join(parts), style="bold")


def _hop_label(hop: HopRecord) -> Text:
    usage = hop.usage
    return Text.assemble(
        (f"{hop.agent}", "bold"), f"  hop {hop.hop}  ",
        (hop.status, _STATUS_STYLE.get(hop.status, "white")),
        f"  {hop.duration_ms:.0f} ms  {usage.tokens_in}→{usage.tokens_out} tok  "
        f"${usage.cost:.6f}  v{hop.state_version}  → {hop.type}",
        (f"  [{usage.model}]" if usage.model else "", "dim"),
        ("  " + short(hop.output, 60)) if hop.output else "",
    )


def _tool_calls(node: Tree, hop: HopRecord) -> None:
    """One line per tool call of the step: name, where it ran, status, latency, result size."""
    for call in hop.tool_calls:
        node.add(Text.assemble(
            ("tool ", "dim"), (call.name, "bold"), (f" @{call.server}" if call.server else ""),
            "  ", (call.status, _STATUS_STYLE.get(call.status, "red")),
            f"  {call.latency_ms:.0f} ms  {call.result_chars} chars  args {call.args_sha256[:12]}",
            ("  " + short(call.arguments, 40)) if call.arguments else ""))


def _conflict_label(conflict: StateConflict) -> Text:
    return Text.assemble(
        (conflict.field, "bold"), f"  v{conflict.version} (read v{conflict.base_version})  ",
        (conflict.policy, "yellow"), "  kept ",
        (f"{conflict.kept.agent}@v{conflict.kept.version}", "green"),
        f" {short(conflict.kept_value, 30)}  over ",
        (f"{conflict.other.agent}@v{conflict.other.version}", "red"),
        f" {short(conflict.other_value, 30)}",
    )


def escalation_table(escalations: list[Escalation]) -> Table:
    table = Table(title="escalations")
    for column in ("id", "trace", "status", "reason", "continuation", "raised"):
        table.add_column(column)
    for e in escalations:
        style = {"open": "yellow", "resumed": "green", "closed": "dim"}[e.status]
        table.add_row(e.escalation_id, e.trace_id, f"[{style}]{e.status}[/]", short(e.reason, 60),
                      e.continuation_trace_id or "", e.created_at.strftime("%Y-%m-%d %H:%M:%S"))
    return table


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


def state_diff(before: Snapshot, after: Snapshot) -> Group:
    """Each field that changed between two versions: its values and who wrote it since."""
    heading = Text.assemble(("trace ", "bold"), after.trace_id,
                            f": version {before.version} → {after.version}")
    table = Table()
    for column in ("field", "change", f"at v{before.version}", f"at v{after.version}",
                   "written by"):
        table.add_column(column)
    for name in sorted(before.fields.keys() | after.fields.keys()):
        old, new = before.fields.get(name, _ABSENT), after.fields.get(name, _ABSENT)
        if old == new:
            continue
        change = "added" if old is _ABSENT else "removed" if new is _ABSENT else "changed"
        write = after.writes.get(name)
        table.add_row(name, change, "" if old is _ABSENT else short(old, 40),
                      "" if new is _ABSENT else short(new, 40),
                      f"{write.agent}@v{write.version}" if write else "")
    lines: list[Any] = [heading, table]
    if before.status != after.status:
        lines.append(Text(f"status: {before.status} → {after.status}"))
    return Group(*lines)


def replay_table(comparisons: Sequence[Comparison], records: int) -> Group:
    """One row per trace: live and rebuilt versions, and what differs (nothing, ideally)."""
    differing = sum(1 for c in comparisons if c.differences)
    table = Table(title=f"replay of {records} outbox records: {len(comparisons)} traces, "
                        f"{differing} differ")
    for column in ("trace", "status", "live", "rebuilt", "result"):
        table.add_column(column)
    for c in comparisons:
        verdict = Text(", ".join(c.differences), style="red") if c.differences \
            else Text("identical", style="green")
        snapshot = c.live or c.rebuilt
        table.add_row(c.trace_id, snapshot.status if snapshot else "",
                      f"v{c.live.version}" if c.live else "-",
                      f"v{c.rebuilt.version}" if c.rebuilt else "-", verdict)
    return Group(table)


_ABSENT = object()
