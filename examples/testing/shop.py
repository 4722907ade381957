"""A tiny shop: placing an order charges the card; a charged order gets its receipt.

The application code under test in ``test_shop.py`` (see docs/testing.md). In production
the App reads its database from ``AIOJOBS_PG_DSN``; in the tests the ``aiojobs_pg_app``
fixture points this same object at a schema of its own.
"""

from __future__ import annotations

from typing import Any

from aiojobs_pg import App, JobContext, Retry
from aiojobs_pg.queries import Conn

app = App()

#: cards the (pretend) payment provider declines
DECLINED = {"4000-0000-0000-0002"}


async def place_order(order_id: int, card: str, amount_cents: int, *, connection: Conn | None = None) -> None:
    """Record an order: its charge is a job, in the caller's transaction when ``connection`` is given."""
    await app.enqueue("charge_card", {"order_id": order_id, "card": card, "amount_cents": amount_cents},
                      queue="payments", dedup_key=f"charge:{order_id}", connection=connection)


@app.handler()
async def charge_card(data: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Charge the card; a declined card is tried again in an hour, a bad amount never."""
    if data["amount_cents"] <= 0:
        raise ValueError(f"order {data['order_id']}: nothing to charge")
    await ctx.progress(0.5, "calling the provider")
    if data["card"] in DECLINED:
        raise Retry(after=3600, reason="card declined")
    await app.enqueue("send_receipt", {"order_id": data["order_id"]}, queue="mail")
    return {"order_id": data["order_id"], "charged": data["amount_cents"]}


@app.handler()
def send_receipt(data: dict[str, Any]) -> str:
    """A sync handler (it runs in a thread): pretend to send an email."""
    return f"receipt for order {data['order_id']}"
