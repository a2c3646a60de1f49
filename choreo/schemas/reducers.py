"""Per-field reducers: how a state field folds a new write into its current value.

Each reducer is a pure function ``(current, update) -> new``. Agents never overwrite shared
state; they send deltas, and the keeper folds each delta field with the field's reducer, so two
agents appending to one list both land. User reducers are named by import path
(``package.module:function``) and must be pure too: never change ``current`` in place.

Several writes fold at once with :func:`fold_writes` (rebuilding a version from a snapshot and
the deltas after it): each builtin but ``merge_deep`` has a batched form that costs
O(the writes) instead of one copy of the value per write, and every form is
*batching-invariant* (``f(f(s, xs), ys) == f(s, xs + ys) == ``the writes folded one by
one; the idea is LangGraph's ``DeltaChannel``). ``merge_deep`` and user reducers are folded
write by write, which is invariant by construction.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from choreo.schemas.errors import ChoreoError

Reducer = Callable[[Any, Any], Any]


class ReducerError(ChoreoError, ValueError):
    """A reducer name cannot be resolved, or a write does not fit its reducer."""


def replace(current: Any, update: Any) -> Any:
    """The write wins. Two writes from the same base version are a conflict (see the keeper)."""
    return update


def append(current: Any, update: Any) -> list[Any]:
    """Add one item to a list."""
    return [*_as_list(current), update]


def extend(current: Any, update: Any) -> list[Any]:
    """Add every item of a list."""
    if not isinstance(update, list):
        raise ReducerError(f"extend needs a list, got {type(update).__name__}")
    return [*_as_list(current), *update]


def merge(current: Any, update: Any) -> dict[str, Any]:
    """Shallow dict merge: the write's keys replace the current keys."""
    return {**_as_dict(current), **_as_dict(update)}


def merge_deep(current: Any, update: Any) -> dict[str, Any]:
    """Recursive dict merge: nested dicts merge, everything else is replaced."""
    result = dict(_as_dict(current))
    for key, value in _as_dict(update).items():
        existing = result.get(key)
        if isinstance(existing, dict) and isinstance(value, dict):
            result[key] = merge_deep(existing, value)
        else:
            result[key] = value
    return result


def add(current: Any, update: Any) -> int | float:
    """Counter: add the write to the current number."""
    if isinstance(update, bool) or not isinstance(update, int | float):
        raise ReducerError(f"add needs a number, got {type(update).__name__}")
    return (current or 0) + update


def maximum(current: Any, update: Any) -> Any:
    """Keep the largest value written."""
    return update if current is None else max(current, update)


def minimum(current: Any, update: Any) -> Any:
    """Keep the smallest value written."""
    return update if current is None else min(current, update)


def set_union(current: Any, update: Any) -> list[Any]:
    """Set union kept as a sorted list, so the result is independent of arrival order."""
    items = update if isinstance(update, list) else [update]
    return sorted({*_as_list(current), *items}, key=_sort_key)


BUILTIN: dict[str, Reducer] = {
    "replace": replace,
    "append": append,
    "extend": extend,
    "merge": merge,
    "merge_deep": merge_deep,
    "add": add,
    "max": maximum,
    "min": minimum,
    "set_union": set_union,
}


def _batched_append(current: Any, writes: list[Any]) -> list[Any]:
    return [*_as_list(current), *writes]


def _batched_extend(current: Any, writes: list[Any]) -> list[Any]:
    items = list(_as_list(current))
    for update in writes:
        if not isinstance(update, list):
            raise ReducerError(f"extend needs a list, got {type(update).__name__}")
        items += update
    return items


def _batched_merge(current: Any, writes: list[Any]) -> dict[str, Any]:
    result = dict(_as_dict(current))
    for update in writes:
        result.update(_as_dict(update))
    return result


def _batched_set_union(current: Any, writes: list[Any]) -> list[Any]:
    items = set(_as_list(current))
    for update in writes:
        items.update(update if isinstance(update, list) else [update])
    return sorted(items, key=_sort_key)


def _batched_in_place(reducer: Reducer) -> Callable[[Any, list[Any]], Any]:
    """A reducer whose value does not grow (a number, the last write): one pass over the
    writes, in order, so even float additions round exactly as one by one."""

    def batched(current: Any, writes: list[Any]) -> Any:
        for update in writes:
            current = reducer(current, update)
        return current

    return batched


#: The batched form of each builtin that has one: ``(current, writes) -> new``.
BATCHED: dict[str, Callable[[Any, list[Any]], Any]] = {
    "replace": _batched_in_place(replace),
    "append": _batched_append,
    "extend": _batched_extend,
    "merge": _batched_merge,
    "add": _batched_in_place(add),
    "max": _batched_in_place(maximum),
    "min": _batched_in_place(minimum),
    "set_union": _batched_set_union,
}


def fold_writes(name: str, current: Any, writes: list[Any]) -> Any:
    """``writes`` folded into ``current`` in order by the reducer ``name``: equal to folding
    them one by one, in one pass when the reducer has a batched form (:data:`BATCHED`).
    Raises :class:`ReducerError` as the reducer would."""
    batched = BATCHED.get(name)
    if not writes:
        return current
    if batched is not None:
        return batched(current, writes)
    reducer = resolve(name)
    for update in writes:
        current = reducer(current, update)
    return current


#: Reducers whose result does not depend on the order writes arrive in.
COMMUTATIVE = frozenset({"add", "max", "min", "set_union"})


def resolve(name: str) -> Reducer:
    """A builtin reducer by name, or a user reducer by ``module:function`` import path."""
    if name in BUILTIN:
        return BUILTIN[name]
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise ReducerError(
            f"unknown reducer {name!r}: use one of {sorted(BUILTIN)} or 'module:function'"
        )
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ReducerError(f"cannot import reducer {name!r}: {exc}") from None
    if not callable(function):
        raise ReducerError(f"reducer {name!r} is not callable")
    return function


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReducerError(f"expected a list, found {type(value).__name__}")
    return value


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReducerError(f"expected an object, found {type(value).__name__}")
    return value


def _sort_key(value: Any) -> tuple[str, str]:
    return (type(value).__name__, repr(value))
