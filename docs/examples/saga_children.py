"""A payment sub-process that is itself a saga, run as a step of the order saga."""

from __future__ import annotations

from pydantic import BaseModel

import nativekit
from nativekit.saga import Saga, SagaContext, SagaStatus

svc = nativekit.Service("orders")
ledger: dict[str, int] = {}  # stands in for the payment provider


class Payment(BaseModel):
    order_id: str
    amount_cents: int


class PlaceOrder(BaseModel):
    order_id: str
    amount_cents: int
    ship_to: str


take_payment: Saga[Payment] = Saga("take-payment", input=Payment)


@take_payment.step()
async def authorize(ctx: SagaContext[Payment]) -> str:
    ledger[ctx.idempotency_key] = ctx.data.amount_cents
    return f"auth-{ctx.data.order_id}"


@authorize.compensate
async def void(ctx: SagaContext[Payment]) -> None:
    ledger.pop(ctx.forward_key, None)


svc.add_saga(take_payment)
place_order = svc.saga("place-order", input=PlaceOrder)


@place_order.child(take_payment)
async def payment(ctx: SagaContext[PlaceOrder]) -> Payment:
    return Payment(order_id=ctx.data.order_id, amount_cents=ctx.data.amount_cents)


@place_order.step(no_retry=(ValueError,))
async def ship(ctx: SagaContext[PlaceOrder]) -> str:
    if not ctx.data.ship_to:
        raise ValueError("no address")
    return f"shipped with {ctx.results['payment']['authorize']}"


async def main() -> tuple[SagaStatus, SagaStatus, SagaStatus]:
    """One order ships; one has no address, so its completed payment is compensated."""
    await svc.startup(hook_sigterm=False)
    try:
        ok = await svc.sagas.start(
            place_order, {"order_id": "1", "amount_cents": 990, "ship_to": "Oslo"}, saga_id="o-1"
        )
        bad = await svc.sagas.start(
            place_order, {"order_id": "2", "amount_cents": 500, "ship_to": ""}, saga_id="o-2"
        )
        await ok.wait(5)
        await bad.wait(5)
        child = await svc.sagas.get("o-2:payment")  # the child's id: "{parent}:{step}"
        return (await svc.sagas.get("o-1")).status, (await bad.wait(5)).status, child.status
    finally:
        await svc.shutdown()
