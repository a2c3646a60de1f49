"""docs/CLI.md lists every command and option with its help, as the parsers say today."""

from __future__ import annotations

import argparse

from choreo.cli import reference
from choreo.cli.main import build_parser
from tests.conftest import REPO


def test_the_cli_reference_is_current() -> None:
    current = (REPO / "docs" / "CLI.md").read_text()
    assert current == reference.render(build_parser()), (
        "docs/CLI.md is stale: python -m choreo.cli.reference > docs/CLI.md"
    )


def test_every_option_has_help_and_says_its_default() -> None:
    missing = []
    for name, parser, summary in reference.commands(build_parser()):
        assert summary, f"{name} has no description"
        for action in reference.options(parser):
            text = action.help or ""
            flag = action.nargs == 0
            optional = bool(action.option_strings) and not action.required and not flag
            if not text or (optional and "default" not in text):
                missing.append(f"{name} {action.option_strings or action.dest}")
    assert missing == []


def test_every_command_is_in_the_reference() -> None:
    listed = {name for name, _, _ in reference.commands(build_parser())}
    assert {
        "choreo submit",
        "choreo dlq",
        "choreo budget",
        "choreo bench hop",
        "choreo up",
    } <= listed
    assert all(
        isinstance(p, argparse.ArgumentParser) for _, p, _ in reference.commands(build_parser())
    )
