"""The order desk's Python agent: looks the customer's order up in a SQLite file.

``orders.db`` is built from ``orders.sql`` (next to this file) the first time it is needed,
so the example ships as text and the database is the same on every machine.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import choreo

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "orders.db"
_ORDER_ID = re.compile(r"\border\s*#?\s*(\d{3,})", re.IGNORECASE)


def connect() -> sqlite3.Connection:
    """A read-only connection to the orders database, built from orders.sql if missing."""
    if not DATABASE.exists():
        # Built under a name of its own, then renamed: no process ever opens half a database.
        staging = DATABASE.with_suffix(f".{os.getpid()}.tmp")
        staging.unlink(missing_ok=True)
        with sqlite3.connect(staging) as db:
            db.executescript((HERE / "orders.sql").read_text())
        db.close()
        staging.replace(DATABASE)
    db = sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    return db


def find_order(order_id: str) -> dict[str, Any] | None:
    """The order with this id, as a dict, or None."""
    db = connect()
    try:
        row = db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
    finally:
        db.close()
    return dict(row) if row is not None else None


@choreo.agent(timeout_s=10)
async def lookup(step: choreo.Step) -> choreo.Result:
    """Finds the order the customer writes about and puts it in the state for the desk."""
    match = _ORDER_ID.search(step.input)
    if match is None:
        return step.emit("ticket.open", {"order": None, "notes": "no order number given"})
    order = find_order(match.group(1))
    if order is None:
        step.log.info("order not found", extra={"order_id": match.group(1)})
        return step.emit(
            "ticket.open", {"order": None, "notes": f"no order {match.group(1)} on file"}
        )
    return step.emit(
        "ticket.open",
        {"order": order},
        text=f"order {order['id']}: {order['item']}, {order['status']}",
    )
