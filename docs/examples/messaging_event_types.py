"""Several event types on one topic: each consumer takes the ones it names."""

from __future__ import annotations

from pydantic import BaseModel

import nativekit


class OrderPlaced(BaseModel):
    order_id: str
    customer_id: str
    total: int


class OrderConfirmed(BaseModel):
    order_id: str
    total: int


class OrderCancelled(BaseModel):
    order_id: str
    reason: str


svc = nativekit.Service("inventory")
sold: list[str] = []  # stands in for the stock table


# An OrderPlaced has every field of an OrderConfirmed, so it would validate as one:
# event_types makes the consumer skip it by its event-type header instead.
@svc.consumer("orders.events", event_types=[OrderConfirmed])
async def on_confirmed(event: OrderConfirmed) -> None:
    """Turn the order's reservation into a sale."""
    sold.append(event.order_id)


closed: list[str] = []  # stands in for an audit trail


# Two of the types in one handler: the event-type header picks the model.
@svc.consumer("orders.events", group="order-audit", event_types=[OrderConfirmed, OrderCancelled])
async def on_closed(event: OrderConfirmed | OrderCancelled) -> None:
    """Record how each order ended."""
    match event:
        case OrderCancelled(reason=reason):
            closed.append(f"{event.order_id} cancelled: {reason}")
        case OrderConfirmed(total=total):
            closed.append(f"{event.order_id} confirmed: {total}")
