"""The one way the CLI prints: nothing it shows is ever read as markup.

Task input, model output, ids, file contents and error messages are untrusted text: a ``[/b]``
in them must print as ``[/b]``, never crash the printer or vanish. Both consoles here are built
with markup, emoji codes and highlighting off, and styled output is assembled from
:class:`rich.text.Text` parts, so the only styles are the ones this code chose.

In a terminal, tables are drawn as tables; when stdout is a pipe or a file, each table row is
one plain tab-separated line and nothing is cut at 80 columns. ``--json`` prints the records
themselves.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

#: One piece of a styled line: plain text, or ``(text, style)``.
Part = str | Text | tuple[str, str]

#: Wide enough that nothing printed to a pipe or a file is ever cut.
_UNCUT = 100_000
#: Control characters but newline and tab: a terminal would act on them (clear the screen,
#: set the title, move the cursor) instead of showing them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(value: str) -> str:
    """``value`` with each control character shown as its escape (``\\x1b``), not obeyed."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), value)


def text(value: str, style: str = "") -> Text:
    """Untrusted text as a Text: no markup read, control characters shown, not obeyed."""
    return Text(clean(value), style=style)


def make_console(*, stderr: bool = False) -> Console:
    """A console that treats every string as plain text, and never cuts when not a terminal."""
    console = Console(stderr=stderr, markup=False, emoji=False, highlight=False, soft_wrap=stderr)
    if not console.is_terminal:
        console.width = _UNCUT
    return console


console = make_console()
err = make_console(stderr=True)


def line(*parts: Part) -> Text:
    """One styled line from plain strings and ``(text, style)`` pairs; no markup is parsed and
    control characters are shown as escapes."""
    return Text.assemble(
        *(
            part
            if isinstance(part, Text)
            else clean(part)
            if isinstance(part, str)
            else (clean(part[0]), part[1])
            for part in parts
        )
    )


def say(*parts: Part) -> None:
    """Print one line to stdout."""
    console.print(line(*parts))


def warn(*parts: Part) -> None:
    """Print one line to stderr."""
    err.print(line(*parts))


def error(message: str) -> None:
    """``error: MESSAGE`` on stderr, the message verbatim."""
    err.print(line(("error: ", "bold red"), message))


def show(renderable: RenderableType) -> None:
    """Print a tree, a group or a line built from Text parts."""
    console.print(renderable)


@dataclass
class Sheet:
    """A table: a drawn table in a terminal, tab-separated lines elsewhere.

    ``columns`` are the header; each row has one cell per column (plain text or styled Text).
    """

    columns: Sequence[str]
    rows: list[Sequence[str | Text]] = field(default_factory=list)
    title: str | None = None

    def add(self, *cells: str | Text) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(cells)


def _cell(value: str | Text) -> Text:
    return value if isinstance(value, Text) else text(value)


def _plain(value: str | Text) -> str:
    plain = value.plain if isinstance(value, Text) else clean(value)
    return " ".join(plain.split())  # one row, one line: tabs and newlines in cells are spaces


def sheet_table(sheet: Sheet) -> Table:
    """The sheet as a table for a terminal; long cells fold rather than being cut."""
    table = Table(title=text(sheet.title) if sheet.title else None)
    for column in sheet.columns:
        table.add_column(text(column), overflow="fold")
    for row in sheet.rows:
        table.add_row(*(_cell(c) for c in row))
    return table


def sheet_lines(sheet: Sheet) -> list[str]:
    """The sheet for a pipe or a file: ``# title``, the header, then one tab-separated line
    per row, nothing cut."""
    lines = [] if sheet.title is None else [f"# {clean(sheet.title)}"]
    lines.append("\t".join(sheet.columns))
    lines += ["\t".join(_plain(c) for c in row) for row in sheet.rows]
    return lines


def show_sheet(sheet: Sheet) -> None:
    """Print a sheet the way this stdout reads best."""
    if console.is_terminal:
        console.print(sheet_table(sheet))
        return
    console.file.write("".join(f"{row}\n" for row in sheet_lines(sheet)))
    console.file.flush()


def to_builtins(value: Any) -> Any:
    """Records (msgspec structs) and containers of them as JSON-ready builtins."""
    return msgspec.to_builtins(value, builtin_types=None, str_keys=True)


def show_json(value: Any) -> None:
    """Print ``value`` as one JSON document (bytes as base64, times as ISO 8601)."""
    sys.stdout.write(json.dumps(to_builtins(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
