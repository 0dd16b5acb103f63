"""The orders service: takes orders and runs the place-order saga.

reserve stock (inventory) -> fraud review (orders of SHOP_REVIEW_THRESHOLD or more wait
for an operator's decision, ``POST /orders/{id}/review``) -> charge the payment
(payments) -> confirm; a failure, a refused review or the order's deadline
(SHOP_ORDER_DEADLINE) rolls back what was done: release the stock, refund the charge,
cancel the order. The saga instance *is* the order: its id is the order id and its
input the order.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Annotated

from starlette.responses import JSONResponse

import nativekit
from examples.shop.clients import (
    InventoryClient,
    LocalInventory,
    LocalPayments,
    PaymentDeclined,
    PaymentsClient,
    PeerError,
    http_clients,
)
from examples.shop.config import config
from examples.shop.models import (
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderRequest,
    OrderView,
    Payment,
    PaymentRequest,
    PlaceOrder,
    PricedItem,
    Product,
    ReleaseStock,
    Reservation,
    ReserveStock,
    ReviewDecision,
    ReviewDelivered,
    StepView,
    payment_id_for,
)
from nativekit.saga import (
    Backoff,
    SagaContext,
    SagaNotFound,
    SagaRecord,
    SagaStateError,
    SagaStatus,
    StepRecord,
    StepStatus,
    outbox_publish,
)

svc = nativekit.Service("orders")
MAX_WAIT = 30.0


class Peers:
    """The other two services, as this process reaches them."""

    inventory: InventoryClient = LocalInventory()
    payments: PaymentsClient = LocalPayments()


peers = Peers()


# The HTTP clients exist from import on and close with the service (after its sagas stop).
_inventory, _payments = http_clients(
    svc, config.inventory_url, config.payments_url, config.http_timeout
)
if _inventory is not None:
    peers.inventory = _inventory
if _payments is not None:
    peers.payments = _payments


#: Order events, published through the saga's outbox (see announce).
order_events = svc.publisher(
    config.topic("orders"), OrderPlaced, OrderConfirmed, OrderCancelled, key="order_id",
    description="An order's life: placed, then confirmed or cancelled.",
)  # fmt: skip

place_order = svc.saga("place-order", input=PlaceOrder, deadline=config.order_deadline)


class OrderRejected(Exception):
    """The fraud review refused the order."""


def announce(
    ctx: SagaContext[PlaceOrder], event: OrderPlaced | OrderConfirmed | OrderCancelled
) -> None:
    """Publish an order event through the saga's outbox: written with the step's completion,
    sent by the relay after it, so a step that failed or crashed announces nothing."""
    order_events.check(event)
    outbox_publish(ctx, order_events.topic, event, key=ctx.data.order_id)


# -- the saga -----------------------------------------------------------------------------


@place_order.step(retries=5, timeout=5)
async def accept_order(ctx: SagaContext[PlaceOrder]) -> None:
    """Announce the order."""
    order = ctx.data
    announce(ctx, OrderPlaced(order_id=order.order_id, customer_id=order.customer_id,
                              total=order.total))  # fmt: skip


@accept_order.compensate
async def cancel_order(ctx: SagaContext[PlaceOrder]) -> None:
    """Runs last when the saga rolls back: announce the cancellation and why."""
    reason = order_reason(await svc.sagas.get(ctx.saga_id)) or "cancelled"
    announce(ctx, OrderCancelled(order_id=ctx.data.order_id, reason=reason))


@place_order.command_step(
    topic=config.topic("inventory.commands"), reply=Reservation, reply_timeout=5.0, retries=2
)
async def reserve_stock(ctx: SagaContext[PlaceOrder]) -> ReserveStock:
    """Ask inventory to hold every line (all or nothing); the step's result is its reply."""
    return ReserveStock(order_id=ctx.data.order_id, items=list(ctx.data.items))


@reserve_stock.compensate_command(topic=config.topic("inventory.commands"), reply=Reservation)
async def release_stock(ctx: SagaContext[PlaceOrder]) -> ReleaseStock:
    """Give the stock back (inventory accepts a release of nothing)."""
    return ReleaseStock(order_id=ctx.data.order_id)


@place_order.step(readonly=True, retries=0)
async def fraud_review(ctx: SagaContext[PlaceOrder]) -> str:
    """Orders of SHOP_REVIEW_THRESHOLD or more wait (no task held) for an operator's
    decision; a refusal, or no decision within SHOP_REVIEW_TIMEOUT, cancels the order."""
    if ctx.data.total < config.review_threshold:
        return "not needed"
    decision = await ctx.wait_for(
        "fraud-review", timeout=config.review_timeout, type=ReviewDecision
    )
    if not decision.approved:
        raise OrderRejected(f"refused by the fraud review ({decision.reviewer})")
    return f"approved by {decision.reviewer}"


@place_order.step(retries=3, timeout=5, backoff=Backoff(0.05, 2.0, 1.0),
                  no_retry=(PaymentDeclined,))  # fmt: skip
async def charge_payment(ctx: SagaContext[PlaceOrder]) -> Payment:
    """Capture the total; the step's idempotency key makes retries charge once."""
    request = PaymentRequest(order_id=ctx.data.order_id, amount=ctx.data.total,
                             token=ctx.data.payment_token)  # fmt: skip
    return await peers.payments.charge(ctx.idempotency_key, request)


@charge_payment.compensate
async def refund_payment(ctx: SagaContext[PlaceOrder]) -> None:
    """Refund by the charge's payment id, known even when the charge's outcome is not."""
    await peers.payments.refund(payment_id_for(ctx.forward_key), ctx.data.order_id)


@place_order.step(retries=10, timeout=5)
async def confirm_order(ctx: SagaContext[PlaceOrder]) -> None:
    """The order is final: announce it (inventory then turns the reservation into a sale)."""
    announce(ctx, OrderConfirmed(order_id=ctx.data.order_id, total=ctx.data.total))


# -- reading orders -------------------------------------------------------------------------

STATUS = {
    SagaStatus.COMPLETED: "CONFIRMED",
    SagaStatus.COMPENSATED: "CANCELLED",
    SagaStatus.ABORTED: "CANCELLED",
}


def order_reason(record: SagaRecord) -> str | None:
    """Why an order was cancelled (or is stuck): the failed step's error message."""
    for definition in place_order.steps:
        step = record.steps.get(definition.name)
        if (
            step is not None
            and step.error
            and step.status in (StepStatus.FAILED, StepStatus.COMPENSATION_FAILED)
        ):
            return step.error.partition(": ")[2] or step.error
    return record.error


def order_view(record: SagaRecord) -> OrderView:
    """The order as clients see it, from its saga instance."""
    order = PlaceOrder.model_validate_json(record.input)
    status = STATUS.get(record.status, "PENDING")
    steps = [
        StepView(name=s.name, status=r.status.value, attempts=r.attempts, error=r.error)
        for s in place_order.steps
        for r in [record.steps.get(s.name) or StepRecord()]
    ]
    cancelled = status == "CANCELLED" or record.status is SagaStatus.FAILED
    reason = order_reason(record) if cancelled else None
    return OrderView(order_id=order.order_id, customer_id=order.customer_id, status=status,
                     reason=reason, items=order.items, total=order.total, steps=steps)  # fmt: skip


@svc.cached(ttl=config.quote_ttl, key="quote:{sku}", none_ttl=0)
async def quote(sku: str) -> Product | None:
    """The catalog entry that prices a line, reused for ``SHOP_QUOTE_TTL`` seconds: a
    price change reaches new orders within that time, and orders does not ask inventory
    over HTTP for every line of every order. Unknown SKUs are asked again each time."""
    return await peers.inventory.product(sku)


async def price(request: OrderRequest) -> list[PricedItem]:
    """Quote every line at the catalog price; an unknown SKU is a 422 naming the line."""
    lines = []
    for n, item in enumerate(request.items):
        try:
            product = await quote(item.sku)
        except PeerError as exc:  # nothing was started: the client can safely retry
            raise nativekit.HTTPError(
                503, f"cannot price items[{n}]: inventory is unavailable ({exc})",
                headers={"Retry-After": "1"},
            ) from exc  # fmt: skip
        if product is None:
            raise nativekit.HTTPError(
                422, f"items[{n}].sku: no product {item.sku!r}",
                extra={"errors": [{"loc": ["body", "items", n, "sku"], "msg": "unknown product"}]},
            )  # fmt: skip
        lines.append(PricedItem(sku=item.sku, quantity=item.quantity, price=product.price))
    return lines


def order_id_for(idempotency_key: str | None) -> str:
    """A new id, or the same id for every request with one Idempotency-Key."""
    if idempotency_key is None:
        return "ord_" + uuid.uuid4().hex[:24]
    return "ord_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def same_request(stored: PlaceOrder, request: OrderRequest) -> bool:
    """Whether a repeated Idempotency-Key came with the same order."""
    lines = [(i.sku, i.quantity) for i in stored.items]
    return (stored.customer_id, lines, stored.payment_token) == (
        request.customer_id, [(i.sku, i.quantity) for i in request.items], request.payment_token
    )  # fmt: skip


def wait_seconds(prefer: str | None) -> float:
    """``Prefer: wait=N`` (RFC 7240) as seconds, at most MAX_WAIT; 0 without it."""
    match = re.search(r"\bwait=(\d+(?:\.\d+)?)", prefer or "")
    return min(float(match.group(1)), MAX_WAIT) if match else 0.0


# -- HTTP -------------------------------------------------------------------------------------


@svc.post("/orders", status_code=202, response_model=OrderView, responses={
    503: "Inventory is unavailable to price the items; nothing was started, retry.",
})  # fmt: skip
async def create_order(
    body: OrderRequest,
    idempotency_key: Annotated[str | None, nativekit.Header("Idempotency-Key")] = None,
    prefer: Annotated[str | None, nativekit.Header("Prefer")] = None,
) -> JSONResponse:
    """Place an order: 202 with the order and its Location.

    ``Prefer: wait=N`` waits up to N seconds for CONFIRMED or CANCELLED. One
    Idempotency-Key gives one order; the same key with another order is a 422."""
    order = PlaceOrder(order_id=order_id_for(idempotency_key), customer_id=body.customer_id,
                       items=await price(body), payment_token=body.payment_token)  # fmt: skip
    handle = await svc.sagas.start(place_order, order, saga_id=order.order_id)
    if not handle.created:
        stored = PlaceOrder.model_validate_json((await svc.sagas.get(order.order_id)).input)
        if not same_request(stored, body):
            raise nativekit.HTTPError(422, "this Idempotency-Key was used for a different order")
    wait = wait_seconds(prefer)
    headers = {"Location": f"/orders/{order.order_id}"}
    if wait:
        headers["Preference-Applied"] = f"wait={wait:g}"
        try:
            record = await svc.sagas.wait(order.order_id, wait)
        except TimeoutError:
            record = await svc.sagas.get(order.order_id)
    else:
        record = await svc.sagas.get(order.order_id)
    return JSONResponse(order_view(record).model_dump(mode="json"), 202, headers=headers)


@svc.get("/orders/{order_id}")
async def get_order(order_id: str) -> OrderView:
    """The order with its status (PENDING, CONFIRMED, CANCELLED with a reason) and steps."""
    try:
        return order_view(await svc.sagas.get(order_id))
    except SagaNotFound:
        raise nativekit.HTTPError(404, f"no order {order_id!r}") from None


@svc.post("/orders/{order_id}/review", status_code=202)
async def review_order(order_id: str, body: ReviewDecision) -> ReviewDelivered:
    """An operator's fraud-review decision for an order that waits for one (delivered once:
    a repeated decision is ignored, ``delivered`` is then false)."""
    try:
        delivered = await svc.sagas.signal(order_id, "fraud-review", body)
    except SagaNotFound:
        raise nativekit.HTTPError(404, f"no order {order_id!r}") from None
    except SagaStateError:
        raise nativekit.HTTPError(409, f"order {order_id!r} is already final") from None
    return ReviewDelivered(order_id=order_id, delivered=delivered)


app = svc.app
# The process serves this service under load: fewer collector passes, and what
# importing built is frozen out of them (docs/performance.md).
nativekit.tune_gc()
