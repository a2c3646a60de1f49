"""Each reducer on its own: what it does with a first write, a second one, and bad input."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from choreo.schemas import reducers
from choreo.schemas.reducers import ReducerError, resolve


def test_replace_keeps_the_write() -> None:
    assert reducers.replace(None, "a") == "a"
    assert reducers.replace("a", {"b": 1}) == {"b": 1}


def test_append_adds_one_item_even_a_list() -> None:
    assert reducers.append(None, "a") == ["a"]
    assert reducers.append(["a"], ["b", "c"]) == ["a", ["b", "c"]]
    with pytest.raises(ReducerError, match="expected a list"):
        reducers.append("not a list", "x")


def test_extend_adds_every_item() -> None:
    assert reducers.extend(None, [1, 2]) == [1, 2]
    assert reducers.extend([1], [2, 3]) == [1, 2, 3]
    with pytest.raises(ReducerError, match="extend needs a list"):
        reducers.extend([1], 2)


def test_extend_and_append_never_mutate_the_current_value() -> None:
    current = [1]
    reducers.extend(current, [2])
    reducers.append(current, 3)
    assert current == [1]


def test_merge_is_shallow() -> None:
    current = {"a": 1, "nested": {"x": 1, "y": 2}}
    assert reducers.merge(current, {"b": 2, "nested": {"x": 9}}) == {
        "a": 1,
        "b": 2,
        "nested": {"x": 9},
    }
    assert current == {"a": 1, "nested": {"x": 1, "y": 2}}
    with pytest.raises(ReducerError, match="expected an object"):
        reducers.merge({}, ["a"])


def test_merge_deep_merges_nested_objects_and_replaces_the_rest() -> None:
    current = {"a": {"x": 1, "y": {"p": 1}}, "b": [1]}
    merged = reducers.merge_deep(current, {"a": {"y": {"q": 2}}, "b": [2]})
    assert merged == {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": [2]}
    assert current == {"a": {"x": 1, "y": {"p": 1}}, "b": [1]}


def test_add_counts_numbers_and_refuses_the_rest() -> None:
    assert reducers.add(None, 2) == 2
    assert reducers.add(2, 0.5) == 2.5
    assert reducers.add(3, -1) == 2
    for bad in (True, "1", None, [1]):
        with pytest.raises(ReducerError, match="add needs a number"):
            reducers.add(1, bad)


def test_max_and_min_keep_the_extremes() -> None:
    assert reducers.maximum(None, 3) == 3
    assert reducers.maximum(3, 1) == 3
    assert reducers.maximum(3, 7) == 7
    assert reducers.minimum(None, 3) == 3
    assert reducers.minimum(3, 7) == 3
    assert reducers.minimum(3, -1) == -1


def test_set_union_is_sorted_and_free_of_duplicates() -> None:
    assert reducers.set_union(None, "b") == ["b"]
    assert reducers.set_union(["b"], ["a", "b", "c"]) == ["a", "b", "c"]
    assert reducers.set_union(["b", "a"], "a") == ["a", "b"]
    assert reducers.set_union([2, "x"], [1]) == [1, 2, "x"]  # mixed types: ordered by type


def test_builtins_resolve_by_name() -> None:
    assert resolve("max") is reducers.maximum
    assert set(reducers.BUILTIN) >= {
        "replace",
        "append",
        "extend",
        "merge",
        "merge_deep",
        "add",
        "max",
        "min",
        "set_union",
    }
    assert set(reducers.BUILTIN) >= reducers.COMMUTATIVE


def test_a_user_reducer_resolves_by_import_path() -> None:
    longest = resolve("tests.state.user_reducers:longest")
    assert longest(None, "ab") == "ab"
    assert longest("abc", "de") == "abc"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sum", "unknown reducer 'sum'"),
        ("tests.state.user_reducers", "unknown reducer"),
        ("tests.state.no_such_module:f", "cannot import reducer"),
        ("tests.state.user_reducers:missing", "cannot import reducer"),
        ("tests.state.user_reducers:NOT_A_FUNCTION", "is not callable"),
    ],
)
def test_unresolvable_reducers_are_named_in_the_error(name: str, message: str) -> None:
    with pytest.raises(ReducerError, match=message):
        resolve(name)


# -- batching invariance: several writes folded at once equal the writes one by one ----------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=8,
)
_numbers = st.one_of(st.integers(-100, 100), st.floats(-1e6, 1e6, allow_nan=False))
_objects = st.dictionaries(st.sampled_from("abc"), _json, max_size=3)
#: Per reducer: the state it starts from and the writes it takes.
_WRITES = {
    "replace": (_json, _json),
    "append": (st.none() | st.lists(_json, max_size=3), _json),
    "extend": (st.none() | st.lists(_json, max_size=3), st.lists(_json, max_size=3)),
    "merge": (st.none() | _objects, _objects),
    "merge_deep": (st.none() | _objects, _objects),
    "add": (st.none() | _numbers, _numbers),
    "max": (st.none() | _numbers, _numbers),
    "min": (st.none() | _numbers, _numbers),
    "set_union": (
        st.none() | st.lists(st.integers(0, 9) | st.text(max_size=2), max_size=3),
        st.integers(0, 9) | st.lists(st.text(max_size=2), max_size=3),
    ),
    "tests.state.user_reducers:longest": (st.none() | st.text(max_size=4), st.text(max_size=4)),
}


@pytest.mark.parametrize("name", sorted(_WRITES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_reducer_folds_a_batch_of_writes_as_it_folds_them_one_by_one(
    name: str, data: st.DataObject
) -> None:
    state_strategy, write_strategy = _WRITES[name]
    start = data.draw(state_strategy, label="state")
    xs = data.draw(st.lists(write_strategy, max_size=4), label="xs")
    ys = data.draw(st.lists(write_strategy, max_size=4), label="ys")
    one_by_one = functools.reduce(resolve(name), [*xs, *ys], start)
    at_once = reducers.fold_writes(name, start, [*xs, *ys])
    in_two = reducers.fold_writes(name, reducers.fold_writes(name, start, xs), ys)
    assert at_once == one_by_one
    assert in_two == one_by_one


def test_every_builtin_reducer_is_checked_for_batching() -> None:
    assert set(reducers.BUILTIN) <= set(_WRITES)


def test_a_batch_is_refused_as_its_bad_write_would_be() -> None:
    with pytest.raises(ReducerError, match="extend needs a list"):
        reducers.fold_writes("extend", [1], [[2], 3])
    with pytest.raises(ReducerError, match="add needs a number"):
        reducers.fold_writes("add", 1, [2, "3"])
