"""Context-budget arithmetic without a model: what is shown, folded and written."""

from __future__ import annotations

from choreo.budget.tokens import estimate_tokens
from choreo.models import context
from choreo.spec.mesh import ContextSpec

CTX = ContextSpec(max_input_tokens=100, history=["log", "tries"], keep_recent=2)


def test_the_estimate_counts_characters_and_message_framing() -> None:
    assert estimate_tokens([{"role": "user", "content": "x" * 9}]) == 3 + 3
    assert estimate_tokens([]) == 0


def test_folded_items_and_the_cursor_are_hidden_from_the_prompt() -> None:
    state = {
        "log": ["a", "b", "c", "d"],
        "tries": [1],
        "summary": "s",
        "summary.folded": {"log": 3},
    }
    assert context.visible_state(CTX, state) == {"log": ["d"], "tries": [1], "summary": "s"}
    assert context.reads(CTX, ["input", "log"]) == ["summary", "input", "log"]
    assert context.reads(CTX, ["log", "summary", "summary.folded"]) == ["log", "summary"]


def test_only_items_beyond_the_recent_window_are_folded() -> None:
    visible = {"log": ["a", "b", "c"], "tries": [1, 2], "other": ["x"] * 9}
    assert context.older_items(CTX, visible) == {"log": ["a"]}
    assert context.older_items(CTX, {"log": "not a list"}) == {}


def test_the_fold_writes_the_summary_and_advances_the_counts() -> None:
    state = {"log": ["a", "b", "c", "d", "e"], "tries": [1, 2, 3], "summary.folded": {"log": 1}}
    visible = context.visible_state(CTX, state)
    older = context.older_items(CTX, visible)
    assert older == {"log": ["b", "c"], "tries": [1]}
    messages = context.summarizer_messages(CTX, visible, older)
    assert messages[0]["content"] == context.SUMMARIZER_PERSONA
    assert messages[1]["content"] == (
        "## summary so far\n(none yet)\n\n## older log\n- b\n- c\n\n## older tries\n- 1"
    )
    after, writes = context.fold(CTX, state, visible, older, "new summary")
    assert writes == {"summary": "new summary", "summary.folded": {"log": 3, "tries": 1}}
    assert after == {"log": ["d", "e"], "tries": [2, 3], "summary": "new summary"}
    # The next step sees exactly what this one sent after its fold.
    assert context.visible_state(CTX, {**state, **writes}) == after
