"""docs/CLI.md from the argparse parsers: every command and option with its help.

The reference is generated, never edited by hand; a test fails when it is stale. Regenerate
with ``python -m choreo.cli.reference > docs/CLI.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

HEADER = """# The `choreo` command line

Generated from the CLI's own parsers by `python -m choreo.cli.reference`; a test keeps
it current. Exit codes: 0 done (a completed trace), 1 the mesh or broker did not do it (a
failed or halted trace, a refused task, nothing found), 2 bad input, 3 the trace is still
running. Read commands print a table in a terminal, tab-separated lines when piped, and JSON
with `--json`. Commands that work on a running mesh (`submit`, `result`, `state`, `trace`,
`budget`, `replay`, `escalations`, `dlq`, `traces`, `groups`, `console`, `topics`, `run`)
never start a broker: they use
`KAFKA_BOOTSTRAP_SERVERS` (or `CHOREO_BOOTSTRAP_SERVERS`) if set, else the broker of a
`choreo up` running from the current folder (`.choreo/up.json`), and then, unless
`CHOREO_TOPIC_PREFIX` is set, its topic prefix too.
"""


def _subparsers(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """Each subcommand: its name, parser and the help its parent lists it with."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, sub, helps.get(name, "")


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _name(action: argparse.Action) -> str:
    if action.option_strings:
        flags = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.nargs == 0:
            return flags
        metavar = action.metavar or action.dest.upper()
        shown = " ".join(metavar) if isinstance(metavar, tuple) else metavar
        return f"{flags} {shown}"
    return f"`{action.metavar or action.dest}`"


def commands(
    parser: argparse.ArgumentParser, prefix: str = "choreo"
) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """Every leaf command, as ``choreo NAME [NAME]``, its parser and what it does."""
    for name, sub, summary in _subparsers(parser):
        if any(True for _ in _subparsers(sub)):
            yield from commands(sub, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", sub, sub.description or summary


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """A command's arguments, without ``--help``."""
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def render(parser: argparse.ArgumentParser) -> str:
    """The whole reference, as Markdown."""
    out = [HEADER]
    for name, sub, summary in commands(parser):
        out.append(f"## `{name}`\n\n{_cell(summary)}\n")
        rows = options(sub)
        if rows:
            out.append("| argument | help |\n|---|---|")
            out += [f"| {_name(a)} | {_cell(a.help)} |" for a in rows]
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    from choreo.cli.main import build_parser

    sys.stdout.write(render(build_parser()))


if __name__ == "__main__":
    main()
