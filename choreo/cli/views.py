"""What the CLI prints: trees, tables and panels a person can read at a glance.

Every view is built from :class:`rich.text.Text` parts and :class:`output.Sheet` rows, so the
untrusted text it shows (task input, model output, ids, reasons) is never read as markup.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.text import Text
from rich.tree import Tree

from choreo.observe.terminal import Sheet, line, text
from choreo.schemas import (
    DeadLetter,
    Escalation,
    HopRecord,
    Snapshot,
    StateConflict,
    TerminalResult,
    Totals,
)
from choreo.schemas.codec import as_text

if TYPE_CHECKING:
    from choreo.client import AgentGroup, TraceBudget, TraceSummary
    from choreo.keeper.replay import Comparison

_STATUS_STYLE = {
    "ok": "green",
    "completed": "green",
    "failed": "red",
    "refused": "yellow",
    "halted": "yellow",
    "running": "cyan",
    "open": "yellow",
    "resumed": "green",
    "closed": "dim",
}


def status_text(status: str) -> Text:
    return text(status, style=_STATUS_STYLE.get(status, ""))


def plural(count: int, noun: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def short(value: Any, width: int | None = 80) -> str:
    """A value on one line; cut to ``width`` characters with an ellipsis (``None``: uncut)."""
    flat = " ".join(as_text(value).split())
    if width is None or len(flat) <= width:
        return flat
    return flat[: width - 1] + "…"


def usage_text(totals: Totals) -> str:
    return (
        f"{plural(totals.hops, 'step')}, {totals.tokens_in} tokens in, "
        f"{totals.tokens_out} out, ${totals.cost:.6f}"
    )


def _by_agent(totals: Totals) -> str:
    return ", ".join(
        f"{name} {plural(t.steps, 'step')} ${t.cost:.6f}"
        for name, t in sorted(totals.by_agent.items())
    )


def result_view(result: TerminalResult) -> Group:
    """The terminal record: status, usage, reason, each agent's share, then the output."""
    lines = [
        line(("result of trace ", "bold"), result.trace_id),
        line(("status  ", "bold"), status_text(result.status)),
        line(("usage   ", "bold"), usage_text(result.usage)),
    ]
    if result.reason:
        lines.append(line(("reason  ", "bold"), result.reason))
    if result.usage.by_agent:
        lines.append(line(("agents  ", "bold"), _by_agent(result.usage)))
    lines.append(Text(""))
    lines.append(
        text(as_text(result.output))
        if result.output is not None
        else Text("(no output)", style="dim")
    )
    return Group(*lines)


def running_view(snapshot: Snapshot | None, trace_id: str) -> Text:
    """What ``result`` says of a trace that has not ended."""
    if snapshot is None:
        return line(
            ("trace ", "bold"), trace_id, " ", status_text("running"), ": no terminal record yet"
        )
    return line(
        ("trace ", "bold"),
        trace_id,
        " ",
        status_text("running"),
        f": no terminal record yet; state at version {snapshot.version}, "
        f"{usage_text(snapshot.totals)}",
    )


def trace_tree(
    trace_id: str,
    hops: list[HopRecord],
    result: TerminalResult | None,
    conflicts: Sequence[StateConflict] = (),
    joins: Mapping[str, Sequence[str]] | None = None,
) -> Tree:
    """Steps in causal order; the flow nests only where a step caused several (fan-out), so a
    chain reads as a list. Versions no step of the list made (the keeper's own transitions,
    or steps not recorded) are named where they were skipped. State conflicts follow, each with
    both writers, both values and the policy that chose between them; then each join's
    arrivals."""
    status = result.status if result else "running"
    root = Tree(line(("trace ", "bold"), trace_id, "  ", status_text(status)))
    children: dict[str | None, list[HopRecord]] = defaultdict(list)
    ids = {hop.event_id for hop in hops}
    ordered = sorted(hops, key=lambda h: (h.state_version, h.hop))
    for hop in ordered:
        parent = hop.causation_id if hop.causation_id in ids else None
        children[parent].append(hop)
    previous = {
        hop.event_id: before.state_version
        for before, hop in zip([None, *ordered], ordered, strict=False)
        if before is not None
    }

    def grow(node: Tree, parent: str | None) -> None:
        caused = children.get(parent, [])
        if len(caused) == 1:  # a chain continues at the same depth
            _tool_calls(
                node.add(_hop_label(caused[0], previous.get(caused[0].event_id))), caused[0]
            )
            grow(node, caused[0].event_id)
            return
        for hop in caused:  # a fork: one branch per step
            branch = node.add(_hop_label(hop, previous.get(hop.event_id)))
            _tool_calls(branch, hop)
            grow(branch, hop.event_id)

    grow(root, None)
    if conflicts:
        branch = root.add(Text(plural(len(conflicts), "state conflict"), style="bold yellow"))
        for conflict in sorted(conflicts, key=lambda c: (c.version, c.field)):
            branch.add(_conflict_label(conflict))
    for name, arrivals in sorted((joins or {}).items()):
        root.add(
            line(
                (f"join {name}", "bold"),
                f"  {plural(len(arrivals), 'arrival')}: ",
                ", ".join(str(a) for a in arrivals),
            )
        )
    if result is not None and result.reason:
        root.add(line(("reason: ", "italic"), result.reason))
    latest = max(hops, key=lambda h: h.state_version, default=None)
    totals = result.usage if result is not None else latest.totals if latest else None
    if totals is not None:
        root.add(totals_text(totals))
    return root


def totals_text(totals: Totals) -> Text:
    """The trace's totals, then each agent's share: who spent what."""
    parts = [
        f"total: {plural(totals.hops, 'step')}, {totals.tokens_in}→{totals.tokens_out} "
        f"tok, ${totals.cost:.6f}"
    ]
    parts += [
        f"{name} {plural(t.steps, 'step')} ${t.cost:.6f}"
        for name, t in sorted(totals.by_agent.items())
    ]
    return text("  |  ".join(parts), style="bold")


def _hop_label(hop: HopRecord, previous_version: int | None) -> Text:
    usage = hop.usage
    skipped = ""
    if previous_version is not None and hop.state_version - previous_version > 1:
        skipped = (
            f"  (v{previous_version + 1} to v{hop.state_version - 1} "
            "written by the keeper or unrecorded steps)"
        )
    return line(
        (hop.agent, "bold"),
        f"  hop {hop.hop}  ",
        status_text(hop.status),
        f"  {hop.duration_ms:.0f} ms  {usage.tokens_in}→{usage.tokens_out} tok  "
        f"${usage.cost:.6f}  v{hop.state_version}  → {hop.type}",
        (f"  ({usage.model})" if usage.model else "", "dim"),
        (skipped, "dim"),
        ("  " + short(hop.output, 60)) if hop.output else "",
    )


def _tool_calls(node: Tree, hop: HopRecord) -> None:
    """One line per tool call of the step: name, where it ran, status, latency, result size;
    then the step's notes on the tools it offered (renamed, left out, capped)."""
    for call in hop.tool_calls:
        node.add(
            line(
                ("tool ", "dim"),
                (call.name, "bold"),
                (f" @{call.server}" if call.server else ""),
                "  ",
                (call.status, _STATUS_STYLE.get(call.status, "red")),
                f"  {call.latency_ms:.0f} ms  {call.result_chars} chars"
                f"  args {call.args_sha256[:12]}",
                ("  " + short(call.arguments, 40)) if call.arguments else "",
            )
        )
    for note in hop.extensions.get("notes", ()):
        node.add(line(("note ", "dim"), str(note)))


def _conflict_label(conflict: StateConflict) -> Text:
    return line(
        (conflict.field, "bold"),
        f"  v{conflict.version} (read v{conflict.base_version})  ",
        (conflict.policy, "yellow"),
        "  kept ",
        (f"{conflict.kept.agent}@v{conflict.kept.version}", "green"),
        f" {short(conflict.kept_value, 30)}  over ",
        (f"{conflict.other.agent}@v{conflict.other.version}", "red"),
        f" {short(conflict.other_value, 30)}",
    )


def escalation_sheet(escalations: list[Escalation]) -> Sheet:
    sheet = Sheet(
        ["id", "trace", "status", "reason", "continuation", "raised"], title="escalations"
    )
    for e in escalations:
        sheet.add(
            e.escalation_id,
            e.trace_id,
            status_text(e.status),
            short(e.reason, 60),
            e.continuation_trace_id or "",
            e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    return sheet


def traces_sheet(traces: Sequence[TraceSummary], total: int, offset: int) -> Sheet:
    """One row per trace: id, status, when admitted, steps, tokens, cost, last agent, reason;
    the title says which of how many matched."""
    shown = f"{offset + 1}-{offset + len(traces)} of {total}" if traces else f"none of {total}"
    sheet = Sheet(
        ["trace", "status", "admitted", "steps", "tokens", "cost", "last agent", "reason"],
        title=f"traces {shown}",
    )
    for t in traces:
        sheet.add(
            t.trace_id,
            status_text(t.status),
            t.admitted_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(t.hops),
            str(t.tokens),
            f"${t.cost:.6f}",
            t.last_agent or "",
            short(t.reason or "", 60),
        )
    return sheet


def groups_sheet(groups: Sequence[AgentGroup]) -> Sheet:
    """One row per agent: its consumer group, what it subscribes to, live replicas, lag."""
    sheet = Sheet(["agent", "group", "subscribes", "replicas", "lag"], title="agents")
    for g in groups:
        sheet.add(g.agent, g.group, ", ".join(g.subscribes), str(g.replicas), str(g.lag))
    return sheet


def state_heading(at: Snapshot | TraceBudget) -> Text:
    """``trace ID at version N STATUS``, for a snapshot or a budget read from one."""
    return line(
        ("trace ", "bold"),
        at.trace_id,
        f" at version {at.version} ",
        status_text(at.status),
    )


def state_sheet(
    snapshot: Snapshot, authors: Mapping[str, Sequence[str]] | None = None, width: int | None = 80
) -> Sheet:
    """Each field with its value, the version it was last written at and who wrote it: every
    author of a field many steps built (an append or a join), else the last writer."""
    sheet = Sheet(["field", "value", "version", "written by"])
    for name in sorted(snapshot.fields):
        write = snapshot.writes.get(name)
        writers = (authors or {}).get(name) or ([write.agent] if write else [])
        sheet.add(
            text(name, style="bold"),
            short(snapshot.fields[name], width),
            str(write.version) if write else "",
            ", ".join(writers),
        )
    return sheet


def state_diff(before: Snapshot, after: Snapshot) -> tuple[Text, Sheet, Text | None]:
    """Each field that changed between two versions: its values and who wrote it since."""
    heading = line(
        ("trace ", "bold"), after.trace_id, f": version {before.version} → {after.version}"
    )
    sheet = Sheet(
        ["field", "change", f"at v{before.version}", f"at v{after.version}", "written by"]
    )
    for name in sorted(before.fields.keys() | after.fields.keys()):
        old, new = before.fields.get(name, _ABSENT), after.fields.get(name, _ABSENT)
        if old == new:
            continue
        change = "added" if old is _ABSENT else "removed" if new is _ABSENT else "changed"
        write = after.writes.get(name)
        sheet.add(
            name,
            change,
            "" if old is _ABSENT else short(old, 40),
            "" if new is _ABSENT else short(new, 40),
            f"{write.agent}@v{write.version}" if write else "",
        )
    status = (
        line(f"status: {before.status} → {after.status}") if before.status != after.status else None
    )
    return heading, sheet, status


def replay_sheet(comparisons: Sequence[Comparison], records: int) -> Sheet:
    """One row per trace: live and rebuilt versions, and what differs (nothing, ideally)."""
    differing = sum(1 for c in comparisons if c.differences)
    sheet = Sheet(
        ["trace", "status", "live", "rebuilt", "result"],
        title=f"replay of {plural(records, 'outbox record')}: "
        f"{plural(len(comparisons), 'trace')}, {differing} differ",
    )
    for c in comparisons:
        verdict = (
            text(", ".join(c.differences), style="red")
            if c.differences
            else Text("identical", style="green")
        )
        snapshot = c.live or c.rebuilt
        sheet.add(
            c.trace_id,
            snapshot.status if snapshot else "",
            f"v{c.live.version}" if c.live else "-",
            f"v{c.rebuilt.version}" if c.rebuilt else "-",
            verdict,
        )
    return sheet


def budget_sheet(budget: TraceBudget) -> Sheet:
    """Each limit of the trace's budget, what is used and what is left."""
    limits, used, left = budget.budget, budget.used, budget.left
    sheet = Sheet(["limit", "budget", "used", "left"])

    def row(name: str, limit: float | None, spent: float, rest: float | None, fmt: str) -> None:
        sheet.add(
            name,
            "unlimited" if limit is None else format(limit, fmt),
            format(spent, fmt),
            "" if rest is None else format(rest, fmt),
        )

    row("steps", limits.max_hops, used.hops, left.hops, "g")
    row("tokens", limits.max_tokens, used.tokens_in + used.tokens_out, left.tokens, "g")
    row("cost ($)", limits.max_cost, used.cost, left.cost, ".6f")
    row("seconds", limits.max_seconds, budget.elapsed_s, left.seconds, ".1f")
    return sheet


def dlq_sheet(letters: Sequence[tuple[str, DeadLetter]]) -> Sheet:
    """One row per dead letter: its id (what ``dlq show`` takes), where the
    record came from, who refused it and why."""
    sheet = Sheet(["id", "when", "from", "key", "consumer", "reason"], title="dead letters")
    for letter_id, letter in letters:
        sheet.add(
            letter_id,
            letter.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{letter.topic}[{letter.partition}]@{letter.offset}",
            letter.key or "",
            letter.consumer,
            short(letter.reason, 100),
        )
    return sheet


def dlq_letter(letter_id: str, letter: DeadLetter) -> Group:
    """One dead letter in full: every field, the reason uncut, the original bytes as text."""
    original = letter.original.decode("utf-8", errors="backslashreplace")
    return Group(
        line(("dead letter ", "bold"), letter_id),
        line(
            ("from      ", "bold"),
            f"{letter.topic} partition {letter.partition} offset {letter.offset}",
        ),
        line(("key       ", "bold"), letter.key or "(none)"),
        line(("consumer  ", "bold"), letter.consumer),
        line(("when      ", "bold"), letter.created_at.isoformat()),
        line(("reason    ", "bold"), letter.reason),
        line(("original  ", "bold"), f"{plural(len(letter.original), 'byte')}:"),
        text(original),
    )


_ABSENT = object()
