"""An order flow that is not a straight line: stock and payment held in parallel, a fraud
review for large orders released by an operator endpoint, a pause before shipping,
and a deadline for the whole order."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

import nativekit
from nativekit.saga import SagaContext, SagaStatus

svc = nativekit.Service("orders")


class PlaceOrder(BaseModel):
    order_id: str
    amount_cents: int


class Review(BaseModel):
    approved: bool
    reviewer: str


held: dict[str, str] = {}  # stands in for the inventory and payment services

place_order = svc.saga("place-order", input=PlaceOrder, deadline=timedelta(minutes=15))

hold = place_order.parallel("hold", on_failure="cancel")


@hold.step(retries=3)
async def reserve_stock(ctx: SagaContext[PlaceOrder]) -> None:
    held[ctx.idempotency_key] = "stock"


@reserve_stock.compensate
async def release_stock(ctx: SagaContext[PlaceOrder]) -> None:
    held.pop(ctx.forward_key, None)


@hold.step(retries=3)
async def authorize_payment(ctx: SagaContext[PlaceOrder]) -> None:
    held[ctx.idempotency_key] = "payment"


@authorize_payment.compensate
async def void_payment(ctx: SagaContext[PlaceOrder]) -> None:
    held.pop(ctx.forward_key, None)


@place_order.step(readonly=True, retries=0)
async def fraud_review(ctx: SagaContext[PlaceOrder]) -> str:
    if ctx.data.amount_cents < 100_000:
        return "not needed"
    review = await ctx.wait_for("fraud-review", timeout=timedelta(days=2), type=Review)
    if not review.approved:
        raise PermissionError(f"order refused by {review.reviewer}")
    return f"approved by {review.reviewer}"


@place_order.step()
async def ship(ctx: SagaContext[PlaceOrder]) -> str:
    await ctx.sleep(0.1)  # e.g. the courier's next pick-up window; no task is held meanwhile
    return f"shipped {ctx.data.order_id}"


@svc.post("/orders/{order_id}/review", status_code=202)
async def review_order(order_id: str, body: Review) -> dict[str, bool]:
    """The operator's decision, delivered to the waiting saga once."""
    delivered = await svc.sagas.signal(f"order-{order_id}", "fraud-review", body)
    return {"delivered": delivered}


async def main() -> tuple[SagaStatus, SagaStatus, SagaStatus]:
    """A small order, a large approved one and a large refused one."""
    await svc.startup(hook_sigterm=False)
    try:
        small = await svc.sagas.start(
            place_order, {"order_id": "1", "amount_cents": 990}, saga_id="order-1"
        )
        large = await svc.sagas.start(
            place_order, {"order_id": "2", "amount_cents": 250_000}, saga_id="order-2"
        )
        refused = await svc.sagas.start(
            place_order, {"order_id": "3", "amount_cents": 250_000}, saga_id="order-3"
        )
        await svc.sagas.signal("order-2", "fraud-review", Review(approved=True, reviewer="ann"))
        await svc.sagas.signal("order-3", "fraud-review", Review(approved=False, reviewer="bob"))
        return (
            (await small.wait(5)).status,
            (await large.wait(5)).status,
            (await refused.wait(5)).status,
        )
    finally:
        await svc.shutdown()
