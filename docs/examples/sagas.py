"""Place an order: reserve stock, charge the card, ship; undo in reverse when a step fails."""

from __future__ import annotations

from pydantic import BaseModel

import nativekit
from nativekit.saga import Backoff, SagaContext, SagaStatus

svc = nativekit.Service("orders")


class PlaceOrder(BaseModel):
    order_id: str
    sku: str
    amount_cents: int


class Reservation(BaseModel):
    reservation_id: str


class Payments:
    """Stands in for a payment service that deduplicates by idempotency key."""

    def __init__(self) -> None:
        self.charges: dict[str, int] = {}

    async def charge(self, key: str, amount: int) -> str:
        if amount > 100_000:
            raise PermissionError("card declined")
        self.charges.setdefault(key, amount)  # a retry with the same key charges once
        return f"ch-{len(self.charges)}"

    async def refund(self, key: str) -> None:
        self.charges.pop(key.replace(":compensate", ":forward"), None)


payments = Payments()
reserved: set[str] = set()

place_order = svc.saga("place-order", input=PlaceOrder)


@place_order.step(retries=3, timeout=5, backoff=Backoff(initial=0.1, maximum=2))
async def reserve_stock(ctx: SagaContext[PlaceOrder]) -> Reservation:
    reserved.add(ctx.data.order_id)
    return Reservation(reservation_id=f"r-{ctx.data.order_id}")


@reserve_stock.compensate
async def release_stock(ctx: SagaContext[PlaceOrder]) -> None:
    reserved.discard(ctx.data.order_id)


@place_order.step(retries=2, timeout=10, no_retry=(PermissionError,))
async def charge_card(ctx: SagaContext[PlaceOrder]) -> str:
    reservation: Reservation = ctx.results["reserve_stock"]
    ctx.log.info("order.charging", reservation=reservation.reservation_id)
    return await payments.charge(ctx.idempotency_key, ctx.data.amount_cents)


@charge_card.compensate(retries=10)
async def refund_card(ctx: SagaContext[PlaceOrder]) -> None:
    await payments.refund(ctx.idempotency_key)


@svc.post("/orders", status_code=202)
async def create_order(body: PlaceOrder) -> dict[str, str]:
    handle = await svc.sagas.start(place_order, body, saga_id=f"order-{body.order_id}")
    return {"saga_id": handle.saga_id}


async def main() -> tuple[SagaStatus, SagaStatus]:
    """Run one order that completes and one whose card is declined."""
    await svc.startup(hook_sigterm=False)
    try:
        ok = await svc.sagas.start(place_order, {"order_id": "1", "sku": "A", "amount_cents": 990})
        declined = await svc.sagas.start(
            place_order, {"order_id": "2", "sku": "B", "amount_cents": 500_000}
        )
        return (await ok.wait(5)).status, (await declined.wait(5)).status
    finally:
        await svc.shutdown()
