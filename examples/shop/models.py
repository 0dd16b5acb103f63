"""What the three shop services say to each other: requests, views, events.

Money is in integer cents (``price``, ``total``, ``amount``) so sums are exact.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OrderStatus = Literal["PENDING", "CONFIRMED", "CANCELLED"]
PaymentStatus = Literal["CAPTURED", "DECLINED", "REFUNDED", "VOIDED"]


class Item(BaseModel):
    """One line of an order."""

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=1000)


class OrderRequest(BaseModel):
    """Body of ``POST /orders``."""

    customer_id: str = Field(min_length=1, max_length=128)
    items: list[Item] = Field(min_length=1, max_length=50)
    payment_token: str = Field(min_length=1, max_length=128)


class PricedItem(Item):
    """An order line with the unit price quoted when the order was placed."""

    price: int


class PlaceOrder(BaseModel):
    """Input of the place-order saga: the whole order, stored with the saga."""

    order_id: str
    customer_id: str
    items: list[PricedItem]
    payment_token: str

    @property
    def total(self) -> int:
        """Order total in cents."""
        return sum(i.price * i.quantity for i in self.items)


class StepView(BaseModel):
    """One saga step as ``GET /orders/{id}`` shows it."""

    name: str
    status: str
    attempts: int
    error: str | None = None


class OrderView(BaseModel):
    """An order as the orders service returns it."""

    order_id: str
    customer_id: str
    status: OrderStatus
    reason: str | None = None
    items: list[PricedItem]
    total: int
    steps: list[StepView] = []


class Product(BaseModel):
    """A product with its stock, as inventory returns it."""

    model_config = ConfigDict(frozen=True)

    sku: str
    name: str
    price: int
    available: int
    reserved: int
    sold: int = 0


class ProductUpdate(BaseModel):
    """Body of ``PUT /inventory/products/{sku}``: create, reprice or restock."""

    name: str = Field(min_length=1, max_length=200)
    price: int = Field(ge=0)
    available: int = Field(ge=0)


class ReserveStock(BaseModel):
    """Ask inventory to hold stock for an order (all lines or none)."""

    order_id: str
    items: list[Item]


class ReleaseStock(BaseModel):
    """Ask inventory to give an order's held stock back (nothing held is fine)."""

    order_id: str


class Reservation(BaseModel):
    """Inventory's answer: the stock is held for the order."""

    order_id: str
    state: Literal["RESERVED", "RELEASED", "SOLD", "REJECTED"]
    reason: str | None = None


class PaymentRequest(BaseModel):
    """Body of ``POST /payments``."""

    order_id: str = Field(min_length=1, max_length=128)
    amount: int = Field(ge=0)
    token: str = Field(min_length=1, max_length=128)


class Payment(BaseModel):
    """A payment as the payments service returns it."""

    payment_id: str
    order_id: str
    amount: int
    status: PaymentStatus
    reason: str | None = None


def payment_id_for(idempotency_key: str) -> str:
    """The payment id a charge with ``idempotency_key`` gets: known before the charge
    answers, so a refund can name a charge whose outcome is unknown."""
    return "pay_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


# -- domain events (published to Kafka; see config.topic) ------------------------------


class OrderPlaced(BaseModel):
    """orders: an order was accepted and its saga started."""

    order_id: str
    customer_id: str
    total: int


class OrderConfirmed(BaseModel):
    """orders: stock reserved and payment captured; the order is final."""

    order_id: str
    total: int


class OrderCancelled(BaseModel):
    """orders: the order was rolled back."""

    order_id: str
    reason: str


class StockReserved(BaseModel):
    """inventory: stock is held for an order."""

    order_id: str
    items: list[Item]


class StockReleased(BaseModel):
    """inventory: held stock went back to available."""

    order_id: str


class StockSold(BaseModel):
    """inventory: held stock became a sale (the order was confirmed)."""

    order_id: str


class PaymentCharged(BaseModel):
    """payments: money was captured."""

    payment_id: str
    order_id: str
    amount: int


class PaymentRefunded(BaseModel):
    """payments: a capture was refunded."""

    payment_id: str
    order_id: str
    amount: int


class ReviewDecision(BaseModel):
    """Body of ``POST /orders/{id}/review``: an operator's fraud-review decision."""

    approved: bool
    reviewer: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=1000)


class ReviewDelivered(BaseModel):
    """Answer of ``POST /orders/{id}/review``."""

    order_id: str
    delivered: bool
