"""Reserve stock and charge the card at once: two command steps in one parallel group.

Run as is, everything uses the in-process memory broker and store; with
NATIVEKIT_KAFKA_URL and NATIVEKIT_REDIS_URL set, each service runs in its own
process against Kafka and Redis without code changes.
"""

from __future__ import annotations

from pydantic import BaseModel

import nativekit
from nativekit import CommandRejected, SagaContext
from nativekit.saga import SagaStatus


class PlaceOrder(BaseModel):
    order_id: str
    amount_cents: int


class ReserveStock(BaseModel):
    order_id: str


class StockReserved(BaseModel):
    reservation_id: str


class ReleaseStock(BaseModel):
    order_id: str


class ChargeCard(BaseModel):
    order_id: str
    amount_cents: int


class CardCharged(BaseModel):
    charge_id: str


class RefundCard(BaseModel):
    order_id: str


# -- two participants, each its own service ------------------------------------------------
inventory = nativekit.Service("inventory")
payments = nativekit.Service("payments")
reserved: set[str] = set()
charged: set[str] = set()


@inventory.command_handler("inventory.commands")
async def on_reserve(cmd: ReserveStock) -> StockReserved:
    reserved.add(cmd.order_id)
    return StockReserved(reservation_id=f"r-{cmd.order_id}")


@inventory.command_handler("inventory.commands")
async def on_release(cmd: ReleaseStock) -> None:
    reserved.discard(cmd.order_id)


@payments.command_handler("payments.commands")
async def on_charge(cmd: ChargeCard) -> CardCharged:
    if cmd.amount_cents > 10_000:
        raise CommandRejected("card declined")  # -> a failure reply
    charged.add(cmd.order_id)
    return CardCharged(charge_id=f"c-{cmd.order_id}")


@payments.command_handler("payments.commands")
async def on_refund(cmd: RefundCard) -> None:
    charged.discard(cmd.order_id)


# -- the orchestrator ------------------------------------------------------------------------
orders = nativekit.Service("orders")
place_order = orders.saga("place-order", input=PlaceOrder)
both = place_order.parallel("reserve-and-charge", on_failure="finish")


@both.command_step(topic="inventory.commands", reply=StockReserved, reply_timeout=5.0)
async def reserve_stock(ctx: SagaContext[PlaceOrder]) -> ReserveStock:
    return ReserveStock(order_id=ctx.data.order_id)


@reserve_stock.compensate_command(topic="inventory.commands")
async def release_stock(ctx: SagaContext[PlaceOrder]) -> ReleaseStock:
    return ReleaseStock(order_id=ctx.data.order_id)


@both.command_step(topic="payments.commands", reply=CardCharged, reply_timeout=5.0, retries=0)
async def charge_card(ctx: SagaContext[PlaceOrder]) -> ChargeCard:
    return ChargeCard(order_id=ctx.data.order_id, amount_cents=ctx.data.amount_cents)


@charge_card.compensate_command(topic="payments.commands")
async def refund_card(ctx: SagaContext[PlaceOrder]) -> RefundCard:
    return RefundCard(order_id=ctx.data.order_id)


@place_order.step()
async def confirm(ctx: SagaContext[PlaceOrder]) -> str:
    stock: StockReserved = ctx.results["reserve_stock"]  # both replies, typed
    card: CardCharged = ctx.results["charge_card"]
    return f"{stock.reservation_id} {card.charge_id}"


async def main() -> tuple[SagaStatus, SagaStatus]:
    """An order that goes through and one whose card is declined."""
    for svc in (inventory, payments, orders):
        await svc.startup(hook_sigterm=False)
    try:
        ok = await orders.sagas.start(place_order, {"order_id": "1", "amount_cents": 990})
        declined = await orders.sagas.start(place_order, {"order_id": "2", "amount_cents": 99_000})
        return (await ok.wait(10)).status, (await declined.wait(10)).status
    finally:
        for svc in (orders, payments, inventory):
            await svc.shutdown()


if __name__ == "__main__":
    import asyncio

    print(asyncio.run(main()))
