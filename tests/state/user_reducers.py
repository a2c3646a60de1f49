"""A user reducer named by import path in test specs: ``tests.state.user_reducers:longest``."""

from __future__ import annotations

from typing import Any

NOT_A_FUNCTION = 42


def longest(current: Any, update: Any) -> str:
    """Keep the longest text written; ties keep the current one."""
    if current is None or len(str(update)) > len(str(current)):
        return str(update)
    return str(current)
