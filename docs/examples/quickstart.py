"""A typed JSON API: run with `uvicorn docs.examples.quickstart:app`."""

from pydantic import BaseModel, Field

import nativekit

svc = nativekit.Service("orders")


class CreateOrder(BaseModel):
    sku: str
    quantity: int = Field(ge=1)


class Order(BaseModel):
    order_id: int
    sku: str
    quantity: int


ORDERS: dict[int, Order] = {}


@svc.post("/orders", status_code=201)
async def create_order(body: CreateOrder) -> Order:
    order = Order(order_id=len(ORDERS) + 1, sku=body.sku, quantity=body.quantity)
    ORDERS[order.order_id] = order
    return order


@svc.get("/orders/{order_id}")
async def get_order(order_id: int) -> Order:
    if order_id not in ORDERS:
        raise nativekit.HTTPError(404, f"Order {order_id} does not exist.")
    return ORDERS[order_id]


app = svc.app
