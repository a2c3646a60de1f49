"""Python tools for the platform tests: one that works, one that raises, one that hangs."""

from __future__ import annotations

import asyncio

import choreo


@choreo.tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


@choreo.tool
async def boom() -> str:
    """Always fails."""
    raise RuntimeError("boom")


@choreo.tool
async def slow() -> str:
    """Never answers."""
    await asyncio.sleep(3600)
    return "late"


@choreo.tool
def stock(sku: str, warehouse: str) -> str:
    """How many of an item a warehouse holds.

    Args:
        sku: The item's stock-keeping unit.
        warehouse: The warehouse's name.
    """
    return f"{len(sku) + len(warehouse)} of {sku} in {warehouse}"
