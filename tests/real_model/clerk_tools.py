"""The clerk's tools (clerk.yaml): three known orders; any other number is a tool error."""

from __future__ import annotations

import choreo

ORDERS = {
    "1042": ("59.90 EUR", "2026-11-28"),
    "1043": ("12.50 EUR", "2026-12-01"),
    "1044": ("230.00 EUR", "not delivered yet"),
}


def _order(order_id: str) -> tuple[str, str]:
    found = ORDERS.get(order_id.strip().lstrip("#"))
    if found is None:
        raise choreo.ToolError(f"no order {order_id}")
    return found


@choreo.tool
def order_total(order_id: str) -> str:
    """The total an order was charged.

    Args:
        order_id: The order number, digits only.
    """
    return _order(order_id)[0]


@choreo.tool
def delivery_date(order_id: str) -> str:
    """The day an order was delivered.

    Args:
        order_id: The order number, digits only.
    """
    return _order(order_id)[1]
