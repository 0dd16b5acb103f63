"""Messaging example: an orders service that reacts to payments and announces paid orders."""

from __future__ import annotations

from pydantic import BaseModel

import nativekit
from nativekit.messaging import Message


class PaymentReceived(BaseModel):
    """Published by the payments service."""

    order_id: str
    amount_cents: int


class OrderPaid(BaseModel):
    """Published by this service once an order is paid."""

    order_id: str


class CardDeclined(Exception):
    """Retrying will not help: dead-letter at once."""


svc = nativekit.Service("orders")
paid: dict[str, int] = {}  # stands in for the orders table


@svc.consumer("payments.events", group="orders", non_retryable=[CardDeclined], concurrency=4)
async def on_payment(event: PaymentReceived, msg: Message) -> None:
    """Mark the order paid and tell the world; runs once per message id."""
    if event.amount_cents <= 0:
        raise CardDeclined(f"order {event.order_id}: nothing was charged")
    paid[event.order_id] = event.amount_cents
    await svc.publish("orders.events", OrderPaid(order_id=event.order_id), key=event.order_id)


app = svc.app
