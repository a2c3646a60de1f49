"""Context budgets: keep an agent's prompt under its input-token budget by folding history.

An agent with a ``context`` declares which state fields are *history* (lists that grow, such as
a log of attempts) and a budget. Items of a history field already folded into the summary are
counted per field in the state field ``<summary>.folded``; the prompt shows the summary plus
the items not yet folded. When that would exceed the budget, every item except the last
``keep_recent`` of each history field is handed to a summarizer, whose answer becomes the new
summary. The summary and the new counts are ordinary writes in the step's delta, folded by
the keeper like any other, so the fold is replayed and audited with the rest of the state.

Tokens are *estimated* (``estimate_tokens``): about four characters a token, as for English
text with the usual BPE tokenizers, plus three a message for the chat framing. The estimate
only decides when to fold and how to charge a tier's token bucket; the tokens reported by the
provider are what is accounted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from choreo.schemas.codec import as_text
from choreo.spec.mesh import ContextSpec

#: The summarizer's system prompt (scripted models match on it).
SUMMARIZER_PERSONA = (
    "You keep the running summary of a task. Fold the older material below into the summary "
    "so far. Keep every fact, decision and open question a colleague needs to continue; drop "
    "repetition. Answer with the new summary only."
)


def folded_counts(ctx: ContextSpec, state: Mapping[str, Any]) -> dict[str, int]:
    """Per history field, how many leading items the summary already covers."""
    counts = state.get(ctx.cursor_field)
    return (
        {h: int(counts.get(h, 0)) for h in ctx.history}
        if isinstance(counts, dict)
        else {h: 0 for h in ctx.history}
    )


def visible_state(ctx: ContextSpec, state: Mapping[str, Any]) -> dict[str, Any]:
    """The state a prompt is rendered from: history without its folded items, no cursor."""
    counts = folded_counts(ctx, state)
    visible = {k: v for k, v in state.items() if k != ctx.cursor_field}
    for name in ctx.history:
        items = visible.get(name)
        if isinstance(items, list):
            visible[name] = items[counts[name] :]
    return visible


def reads(ctx: ContextSpec, names: Sequence[str]) -> list[str]:
    """The fields a prompt shows: the agent's, with the summary first if it is not among them."""
    names = [n for n in names if n != ctx.cursor_field]
    return names if ctx.summary_field in names else [ctx.summary_field, *names]


def older_items(ctx: ContextSpec, visible: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Per history field, the unfolded items beyond the recent window (fields with none left
    out, in the spec's order)."""
    older = {}
    for name in ctx.history:
        items = visible.get(name)
        if isinstance(items, list) and len(items) > ctx.keep_recent:
            older[name] = items[: len(items) - ctx.keep_recent]
    return older


def summarizer_messages(
    ctx: ContextSpec, visible: Mapping[str, Any], older: Mapping[str, list[Any]]
) -> list[dict[str, str]]:
    """The summarizer's chat: the summary so far, then each field's older items in order."""
    summary = visible.get(ctx.summary_field)
    sections = [f"## summary so far\n{as_text(summary) if summary else '(none yet)'}"]
    sections += [
        f"## older {name}\n" + "\n".join(f"- {as_text(item)}" for item in items)
        for name, items in older.items()
    ]
    return [
        {"role": "system", "content": SUMMARIZER_PERSONA},
        {"role": "user", "content": "\n\n".join(sections)},
    ]


def fold(
    ctx: ContextSpec,
    state: Mapping[str, Any],
    visible: Mapping[str, Any],
    older: Mapping[str, list[Any]],
    summary: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """After the summarizer answered: the new visible state, and the writes for the delta."""
    counts = folded_counts(ctx, state)
    for name, items in older.items():
        counts[name] += len(items)
    writes = {ctx.summary_field: summary, ctx.cursor_field: counts}
    after = dict(visible)
    after[ctx.summary_field] = summary
    for name, items in older.items():
        after[name] = visible[name][len(items) :]
    return after, writes
