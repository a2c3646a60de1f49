"""The providers' rules for the tools a request offers: their names and how many.

OpenAI and Anthropic refuse a request (HTTP 400) whose tool names break
``^[a-zA-Z0-9_-]{1,64}$`` or that offers more than 128 tools, so one MCP server listing a
name with a space or a few hundred tools would fail every step of its agent. A name that
breaks the rule is offered renamed (every other character becomes ``_``, cut to 64) or, when
the new name is taken or empty, left out; the tools past a tier's ``max_tools`` are not
offered. Each is said once in the log and noted in the step's hop record (``choreo trace``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from choreo.tools.base import Tool

T = TypeVar("T")

#: The tool names OpenAI and Anthropic accept.
NAME_RULE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
#: The characters a name that breaks the rule has replaced by ``_``.
_OUTSIDE = re.compile(r"[^a-zA-Z0-9_-]")
#: The most characters a tool name may have.
MAX_NAME = 64


def provider_name(name: str) -> str:
    """``name`` made to fit ``NAME_RULE``: other characters as ``_``, cut to 64 ("" for a
    name with no character left)."""
    if NAME_RULE.fullmatch(name):
        return name
    fitted = _OUTSIDE.sub("_", name)[:MAX_NAME]
    return fitted if fitted.strip("_") else ""


def fit_names(tools: Sequence[Tool], taken: Sequence[str] = ()) -> tuple[list[Tool], list[str]]:
    """The tools with names the providers accept, and a note for each renamed or left out.

    A tool whose fitted name is empty, or already taken (by ``taken`` or an earlier tool),
    is left out. Renamed tools get their new ``name`` set (the caller keeps the original to
    call it by).
    """
    kept: list[Tool] = []
    notes: list[str] = []
    names = set(taken) | {t.name for t in tools if NAME_RULE.fullmatch(t.name)}
    for tool in tools:
        if NAME_RULE.fullmatch(tool.name):
            kept.append(tool)
            continue
        fitted = provider_name(tool.name)
        where = f" of {tool.server}" if tool.server else ""
        if not fitted or fitted in names:
            notes.append(
                f"tool {tool.name[:100]!r}{where} left out: its name breaks the providers' "
                f"rule ^{NAME_RULE.pattern}$" + (f" and {fitted!r} is taken" if fitted else "")
            )
            continue
        notes.append(f"tool {tool.name[:100]!r}{where} offered as {fitted!r}")
        names.add(fitted)
        tool.name = fitted
        kept.append(tool)
    return kept, notes


def capped(offered: list[T], max_tools: int, tier: str) -> tuple[list[T], str | None]:
    """The first ``max_tools`` of the tools ``offered``, and a note when some were cut."""
    if len(offered) <= max_tools:
        return offered, None
    return offered[:max_tools], (
        f"{len(offered) - max_tools} of {len(offered)} tools not offered: tier {tier!r} "
        f"offers at most {max_tools} (its max_tools)"
    )
