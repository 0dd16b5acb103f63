"""Place an order across services: orders orchestrates, inventory answers commands.

Run as is, everything uses the in-process memory broker and store; with
NATIVEKIT_KAFKA_URL and NATIVEKIT_REDIS_URL set, each service runs in its own
process against Kafka and Redis without code changes.
"""

from __future__ import annotations

from pydantic import BaseModel

import nativekit
from nativekit import CommandRejected, SagaContext
from nativekit.saga import SagaStatus, outbox_publish


# -- messages shared by both services ------------------------------------------------
class PlaceOrder(BaseModel):
    order_id: str
    sku: str
    qty: int


class ReserveStock(BaseModel):
    order_id: str
    sku: str
    qty: int


class StockReserved(BaseModel):
    reservation_id: str


class ReleaseStock(BaseModel):
    order_id: str


class StockReleased(BaseModel):
    released: bool


class OrderPlaced(BaseModel):
    order_id: str
    reservation_id: str


# -- the participant: inventory ----------------------------------------------------------
inventory = nativekit.Service("inventory")
stock = {"mug": 3}
reservations: dict[str, int] = {}


@inventory.command_handler("inventory.commands")
async def on_reserve(cmd: ReserveStock) -> StockReserved:
    if stock.get(cmd.sku, 0) < cmd.qty:
        raise CommandRejected(f"insufficient stock for sku {cmd.sku}")  # -> failure reply
    stock[cmd.sku] -= cmd.qty
    reservations[cmd.order_id] = cmd.qty
    return StockReserved(reservation_id=f"r-{cmd.order_id}")


@inventory.command_handler("inventory.commands")  # a second command type on the same topic
async def on_release(cmd: ReleaseStock) -> StockReleased:
    qty = reservations.pop(cmd.order_id, 0)  # "nothing to undo" is a success too
    stock["mug"] += qty
    return StockReleased(released=qty > 0)


# -- the orchestrator: orders -------------------------------------------------------------
orders = nativekit.Service("orders")
place_order = orders.saga("place-order", input=PlaceOrder)


@place_order.step(readonly=True)  # a local step, mixed with command steps
async def check(ctx: SagaContext[PlaceOrder]) -> None:
    if ctx.data.qty < 1:
        raise ValueError("qty must be at least 1")


@place_order.command_step(
    topic="inventory.commands", reply=StockReserved, reply_timeout=5.0, retries=2
)
async def reserve_stock(ctx: SagaContext[PlaceOrder]) -> ReserveStock:
    return ReserveStock(order_id=ctx.data.order_id, sku=ctx.data.sku, qty=ctx.data.qty)


@reserve_stock.compensate_command(topic="inventory.commands", reply=StockReleased)
async def release_stock(ctx: SagaContext[PlaceOrder]) -> ReleaseStock:
    return ReleaseStock(order_id=ctx.data.order_id)


@place_order.step()
async def announce(ctx: SagaContext[PlaceOrder]) -> None:
    reserved: StockReserved = ctx.results["reserve_stock"]  # the typed reply
    # published by the outbox relay, atomically with this step's completion
    outbox_publish(
        ctx,
        "orders.events",
        OrderPlaced(order_id=ctx.data.order_id, reservation_id=reserved.reservation_id),
    )


async def main() -> tuple[SagaStatus, SagaStatus]:
    """Place an order that fits the stock and one that does not."""
    await inventory.startup(hook_sigterm=False)
    await orders.startup(hook_sigterm=False)
    try:
        ok = await orders.sagas.start(place_order, {"order_id": "1", "sku": "mug", "qty": 2})
        too_many = await orders.sagas.start(place_order, {"order_id": "2", "sku": "mug", "qty": 5})
        return (await ok.wait(10)).status, (await too_many.wait(10)).status
    finally:
        await orders.shutdown()
        await inventory.shutdown()


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(main()))
