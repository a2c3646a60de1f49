"""Text from outside always encodes, and a cut reply stays within its limit."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from choreo.agent.step import fit_reply
from choreo.schemas import DecodeError, Task, decode, encode
from choreo.schemas.codec import clean_text, cut_text

any_text = st.text(st.characters(exclude_categories=()))  # lone surrogates included


@given(any_text)
def test_clean_text_always_encodes_and_keeps_clean_text_as_it_is(text: str) -> None:
    cleaned = clean_text(text)
    cleaned.encode("utf-8")
    assert len(cleaned) == len(text)
    for before, after in zip(text, cleaned, strict=True):
        assert after == ("\ufffd" if 0xD800 <= ord(before) <= 0xDFFF else before)


@given(st.text(), st.integers(min_value=0, max_value=64))
def test_cut_text_keeps_whole_characters_within_the_limit(text: str, limit: int) -> None:
    kept, size = cut_text(text, limit)
    assert size == len(text.encode("utf-8"))
    assert len(kept.encode("utf-8")) <= max(limit, 0) or kept == text
    assert text.startswith(kept)


@given(st.text(min_size=1), st.integers(min_value=1, max_value=64))
def test_fit_reply_notes_exactly_the_cuts_it_makes(text: str, limit: int) -> None:
    fitted, cut = fit_reply(text, limit)
    if len(text.encode("utf-8")) <= limit:
        assert (fitted, cut) == (text, None)
    else:
        assert cut is not None and cut["reply_bytes"] == len(text.encode("utf-8"))
        assert cut["kept_bytes"] <= limit
        assert fitted.endswith(
            f"[cut: the reply was {cut['reply_bytes']} bytes, {cut['kept_bytes']} kept]"
        )


@given(any_text)
def test_a_task_with_any_escaped_text_decodes_to_text_that_encodes(text: str) -> None:
    raw = json.dumps({"input": text, "metadata": {text: [text]}}).encode()
    task = decode(raw, Task)
    assert task.input == clean_text(text)
    assert encode(task)


def test_invalid_utf8_and_non_json_are_still_refused() -> None:
    with pytest.raises(DecodeError):
        decode(b'{"input": "\xff\\ud83d"}', Task)
    with pytest.raises(DecodeError):
        decode(b'{"input": NaN, "x": "\\u0041"}', Task)
    with pytest.raises(DecodeError):
        decode(b'["\\ud83d"]', Task)
