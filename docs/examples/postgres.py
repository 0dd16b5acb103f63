"""The example of docs/postgres.md: business writes that commit with nativekit's own records.

Run it against a PostgreSQL (``DATABASE_URL``, default the local one): it creates a
schema of its own, applies nativekit's migrations there, and drops it at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from pydantic import BaseModel

import nativekit
from nativekit import Transaction
from nativekit.saga import SagaContext, SagaStatus

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = f"docs_{uuid.uuid4().hex[:8]}"  # yours would be fixed, e.g. "orders"

svc = nativekit.Service(
    "orders",
    settings=nativekit.Settings(
        database={"url": DATABASE_URL, "schema_name": SCHEMA, "migrate_on_start": True}
    ),
)


class Order(BaseModel):
    order_id: str
    amount: int
    card_ok: bool = True


place_order = svc.saga("place-order", input=Order)


@place_order.step()
async def record_order(ctx: SagaContext[Order]) -> None:
    # committed together with "record_order completed", or not at all
    await ctx.db.execute(
        f"INSERT INTO {SCHEMA}.orders (id, amount, state) VALUES ($1, $2, 'placed')",
        ctx.data.order_id,
        ctx.data.amount,
    )


@record_order.compensate
async def cancel_order(ctx: SagaContext[Order]) -> None:
    await ctx.db.execute(
        f"UPDATE {SCHEMA}.orders SET state = 'cancelled' WHERE id = $1", ctx.data.order_id
    )


@place_order.step(no_retry=(PermissionError,))
async def charge(ctx: SagaContext[Order]) -> None:
    await ctx.db.execute(
        f"INSERT INTO {SCHEMA}.payments (order_id, amount) VALUES ($1, $2)",
        ctx.data.order_id,
        ctx.data.amount,
    )
    if not ctx.data.card_ok:  # raised after the insert: the insert is rolled back
        raise PermissionError("card declined")


class Shipped(BaseModel):
    order_id: str


@svc.consumer("shipping.events", group="orders")
async def on_shipped(event: Shipped, tx: Transaction) -> None:
    # the UPDATE and the message's DONE mark commit together: a redelivered
    # Shipped event after a crash finds the mark and is skipped
    await tx.execute(f"UPDATE {SCHEMA}.orders SET state = 'shipped' WHERE id = $1", event.order_id)


async def main() -> dict[str, tuple[str, str, int]]:
    """Place a good and a declined order, ship the good one; return the table's rows."""
    await svc.startup(hook_sigterm=False)  # applies the migrations (migrate_on_start)
    try:
        async with svc.transaction() as tx:
            await tx.execute(
                f"CREATE TABLE {SCHEMA}.orders (id text PRIMARY KEY, amount int, state text);"
                f"CREATE TABLE {SCHEMA}.payments (order_id text, amount int)"
            )
        good = await svc.sagas.start(place_order, Order(order_id="o-1", amount=990))
        bad = await svc.sagas.start(place_order, Order(order_id="o-2", amount=120, card_ok=False))
        assert (await good.wait(10)).status is SagaStatus.COMPLETED
        assert (await bad.wait(10)).status is SagaStatus.COMPENSATED
        await svc.publish("shipping.events", Shipped(order_id="o-1"), message_id="ship-o-1")
        await svc.publish("shipping.events", Shipped(order_id="o-1"), message_id="ship-o-1")
        for _ in range(100):  # the consumer runs in the background
            async with svc.transaction() as tx:
                rows = await tx.fetch(
                    f"SELECT o.id, o.state, coalesce(sum(p.amount), 0) AS paid "
                    f"FROM {SCHEMA}.orders o LEFT JOIN {SCHEMA}.payments p ON p.order_id = o.id "
                    "GROUP BY o.id, o.state"
                )
            if any(r["state"] == "shipped" for r in rows):
                break
            await asyncio.sleep(0.05)
        return {r["id"]: (r["id"], r["state"], r["paid"]) for r in rows}
    finally:
        async with svc.transaction() as tx:
            await tx.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        await svc.shutdown()


if __name__ == "__main__":
    print(asyncio.run(main()))
