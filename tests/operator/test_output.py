"""Untrusted text prints verbatim in every view: never read as markup, never cut in a pipe."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console, RenderableType

from choreo.cli import views
from choreo.observe import terminal as output
from choreo.schemas import (
    DeadLetter,
    Escalation,
    FieldWrite,
    HopRecord,
    Snapshot,
    StateConflict,
    TerminalResult,
    Totals,
)

#: Text a person or a model may write, with the markup-like pieces that once broke the CLI.
untrusted = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40),
    st.sampled_from(
        [
            "[/b]",
            "[audit]",
            "[bold red]x[/]",
            "[/x]",
            ":smile:",
            "[link=x]y",
            "\\[b]",
            "[",
            "]",
            "[[/]]",
        ]
    ),
).filter(lambda s: s.strip() != "")


def _render(renderable: RenderableType, terminal: bool = False) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        markup=False,
        emoji=False,
        highlight=False,
        force_terminal=terminal,
        width=output._UNCUT if not terminal else 120,
        color_system=None,
    )
    console.print(renderable)
    return buffer.getvalue()


def _one_line(text: str) -> str:
    return " ".join(text.split())


@settings(max_examples=25, deadline=None)
@given(text=untrusted, agent=untrusted, trace=untrusted)
def test_every_view_prints_untrusted_text_verbatim(text: str, agent: str, trace: str) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    write = FieldWrite(version=2, agent=agent)
    snapshot = Snapshot(
        trace_id=trace, version=2, fields={"input": text, text: text}, writes={"input": write}
    )
    result = TerminalResult(
        trace_id=trace, status="failed", output=text, reason=text, usage=Totals(hops=1)
    )
    hop = HopRecord(
        trace_id=trace,
        event_id="e1",
        agent=agent,
        hop=1,
        type=text,
        state_version=2,
        state_hash="h",
        input_fingerprint="f",
        output=text,
    )
    conflict = StateConflict(
        trace_id=trace,
        field=text,
        base_version=1,
        version=2,
        policy="reject",
        kept=write,
        kept_value=text,
        other=write,
        other_value=text,
    )
    letter = DeadLetter(
        topic="t",
        partition=0,
        offset=1,
        key=trace,
        reason=text,
        consumer="keeper",
        original=text.encode(),
        created_at=at,
    )
    escalation = Escalation(escalation_id=trace, trace_id=trace, reason=text, created_at=at)
    views_shown = [
        views.result_view(result),
        views.trace_tree(trace, [hop], result, [conflict], {"gather": [agent]}),
        "\n".join(output.sheet_lines(views.state_sheet(snapshot, width=None))),
        output.sheet_table(views.state_sheet(snapshot, width=None)),
        "\n".join(output.sheet_lines(views.escalation_sheet([escalation]))),
        output.sheet_table(views.escalation_sheet([escalation])),
        "\n".join(output.sheet_lines(views.dlq_sheet([("0:1", letter)]))),
        views.dlq_letter("0:1", letter),
    ]
    for renderable in views_shown:
        shown = _one_line(renderable if isinstance(renderable, str) else _render(renderable))
        assert _one_line(trace)[:30] in shown or _one_line(text)[:30] in shown


@settings(max_examples=40, deadline=None)
@given(text=untrusted)
def test_an_error_message_prints_verbatim(text: str) -> None:
    # captured, not redirected: setting the console's file would pin it to this test's stderr
    with output.err.capture() as captured:
        output.error(text)
    assert _one_line(captured.get()) == _one_line(f"error: {text}")


def test_terminal_escape_codes_in_text_never_reach_the_output() -> None:
    shown = _render(
        views.result_view(
            TerminalResult(trace_id="t", status="completed", output="\x1b[2J\x1b]0;owned\x07done")
        )
    )
    assert "\x1b" not in shown and "\x07" not in shown and "done" in shown


def test_a_sheet_in_a_pipe_is_one_uncut_line_per_row() -> None:
    long_id = "trace-" + "x" * 150
    sheet = output.Sheet(["id", "reason"])
    sheet.add(long_id, "line one\nline two\tand a tab")
    lines = output.sheet_lines(sheet)
    assert lines == ["id\treason", f"{long_id}\tline one line two and a tab"]


def test_a_failed_result_without_output_says_so_not_null() -> None:
    shown = _render(
        views.result_view(
            TerminalResult(trace_id="t", status="failed", reason="budget", usage=Totals(hops=1))
        )
    )
    assert "null" not in shown and "(no output)" in shown
    assert "1 step," in shown and "1 steps" not in shown


def test_a_trace_shows_join_arrivals_and_the_versions_no_step_made() -> None:
    hops = [
        HopRecord(
            trace_id="t",
            event_id=f"e{v}",
            causation_id=None,
            agent=agent,
            hop=1,
            type="done",
            state_version=v,
            state_hash="h",
            input_fingerprint="f",
        )
        for v, agent in ((2, "historian"), (3, "economist"), (6, "synthesizer"))
    ]
    shown = _render(views.trace_tree("t", hops, None, joins={"gather": ["historian", "economist"]}))
    assert "v4 to v5 written by the keeper or unrecorded steps" in shown
    assert "join gather  2 arrivals: historian, economist" in shown
    assert shown.count("written by the keeper") == 1
