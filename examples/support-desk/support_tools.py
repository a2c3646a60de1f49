"""Tools the support desk's model calls: plain typed functions, schema from the signature."""

from __future__ import annotations

from typing import Literal

from orders import find_order

import choreo

#: Days after delivery within which an order may be returned for any reason.
RETURN_DAYS = 30


@choreo.tool
def refund_eligibility(order_id: str, reason: Literal["damaged", "late", "changed_mind"]) -> str:
    """Whether an order can be refunded, and how.

    Args:
        order_id: The order number, digits only.
        reason: Why the customer wants a refund.
    """
    order = find_order(order_id)
    if order is None:
        raise choreo.ToolError(f"no order {order_id}")
    if order["status"] != "delivered":
        return f"not eligible: order {order_id} is {order['status']}, not delivered yet"
    if reason == "damaged":
        return f"eligible: full refund of {order['total_eur']:.2f} EUR, no return needed"
    if order["delivered_days_ago"] <= RETURN_DAYS:
        return f"eligible: refund of {order['total_eur']:.2f} EUR once the item is returned"
    return f"not eligible: delivered {order['delivered_days_ago']} days ago"


@choreo.tool
async def shipping_status(order_id: str) -> dict[str, str | None]:
    """Where an order is: its status and carrier.

    Args:
        order_id: The order number, digits only.
    """
    order = find_order(order_id)
    if order is None:
        raise choreo.ToolError(f"no order {order_id}")
    return {"status": order["status"], "carrier": order["carrier"]}
