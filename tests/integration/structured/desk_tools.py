"""The desk's one tool in the structured-routing test."""

from __future__ import annotations

import choreo


@choreo.tool
def order_status(order_id: str) -> str:
    """Where an order is.

    Args:
        order_id: The order number.
    """
    return f"order {order_id}: shipped"
