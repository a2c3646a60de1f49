"""The keeper's field digests: carried from step to step, always those of a fresh start."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.keeper.digest import (
    StateDigest,
    digest,
    field_hashes,
    fields_size,
    situation,
    state_hash,
)
from choreo.schemas.codec import to_json
from choreo.schemas.shapes import field_shape

_items = st.one_of(
    st.integers(-3, 3),
    st.text(alphabet="ab 12", max_size=6),
    st.dictionaries(st.sampled_from("xy"), st.integers(0, 2), max_size=2),
)
_values = st.one_of(
    st.none(),
    _items,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet='a"\\\n\u00e9\U0001f600', max_size=4),
    st.lists(_items, max_size=5),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), _values, st.booleans()), max_size=12))
def test_digests_carried_across_steps_equal_digests_made_from_scratch(
    writes: list[tuple[str, Any, bool]],
) -> None:
    """Each write replaces a field, or (``grow``) appends to a list field as ``append`` does."""
    carried, fields = StateDigest(), {}
    for name, value, grow in writes:
        current = fields.get(name)
        fields = dict(fields)
        fields[name] = [*current, value] if grow and isinstance(current, list) else value
        kept = carried.update(fields)
        fresh = StateDigest().update(fields)
        assert state_hash(kept) == state_hash(fresh)
        assert field_hashes(kept) == field_hashes(fresh)
        assert situation(kept, None) == situation(fresh, None)
        assert situation(kept, ["a", "z"]) == situation(fresh, ["a", "z"])
        assert fields_size(kept) == len(to_json(fields))


@given(_values)
def test_a_fields_shape_is_the_hop_records_field_shape(value: Any) -> None:
    assert digest(value).shape == field_shape(value)


def test_a_different_state_has_a_different_hash_and_the_same_one_the_same() -> None:
    one = StateDigest().update({"log": ["a", "b"], "n": 1})
    assert state_hash(one) == state_hash(StateDigest().update({"n": 1, "log": ["a", "b"]}))
    assert state_hash(one) != state_hash(StateDigest().update({"log": ["b", "a"], "n": 1}))
    assert state_hash(one) != state_hash(StateDigest().update({"log": [["a", "b"]], "n": 1}))


def test_a_situation_sees_shapes_in_order_and_ignores_numbers() -> None:
    first = StateDigest().update({"log": ["attempt 1 failed", "retry"]})
    again = StateDigest().update({"log": ["attempt 2 failed", "retry"]})
    swapped = StateDigest().update({"log": ["retry", "attempt 2 failed"]})
    assert situation(first, None) == situation(again, None)
    assert situation(first, None) != situation(swapped, None)


def test_a_list_grown_at_its_end_keeps_the_hashes_of_a_fresh_digest() -> None:
    log = [f"line {i}" for i in range(3)]
    before = digest(log)
    grown = [*log, "line 3"]
    after = digest(grown, before)
    assert after.value is grown
    assert after.content == digest(grown).content
    assert after.shape == before.shape  # more of the same shape
