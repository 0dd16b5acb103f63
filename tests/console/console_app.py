"""A service on real Redis and Kafka for the console's browser test (run by uvicorn).

``CONSOLE_TEST_MARK`` names its saga key prefix, topic and the Redis keys the test
uses as switches: while ``<mark>:broken`` exists, the 'ship' saga fails after its
pivot (parks FAILED) and the consumer fails (dead-letters); ``<mark>:handled``
counts the payments the consumer handled.
"""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from pydantic import BaseModel

import nativekit
from nativekit.saga import Saga, SagaContext

MARK = os.environ["CONSOLE_TEST_MARK"]
svc = nativekit.Service("orders")
switches = aioredis.Redis.from_url(os.environ["NATIVEKIT_REDIS_URL"])


class Order(BaseModel):
    """Input of the 'ship' saga."""

    order_id: str
    quantity: int


class Paid(BaseModel):
    """A consumed event."""

    order_id: str
    amount: int


ship: Saga[Order] = svc.saga("ship", input=Order)


@ship.step()
async def reserve(ctx: SagaContext[Order]) -> dict[str, int]:
    return {"reserved": ctx.data.quantity}


@reserve.compensate()
async def release(ctx: SagaContext[Order]) -> None:
    return None


@ship.step()  # no compensation: the pivot
async def charge(ctx: SagaContext[Order]) -> None:
    return None


@ship.step(retries=0)
async def dispatch(ctx: SagaContext[Order]) -> None:
    if await switches.exists(f"{MARK}:broken"):
        raise ConnectionError("carrier API answered 503")


@svc.consumer(f"{MARK}-payments", retries=0)
async def on_paid(event: Paid) -> None:
    if await switches.exists(f"{MARK}:broken"):
        raise ValueError(f"no order {event.order_id} here yet")
    await switches.incr(f"{MARK}:handled")


@svc.post("/orders/{order_id}", status_code=202)
async def place(order_id: str) -> dict[str, str]:
    handle = await svc.sagas.start(ship, Order(order_id=order_id, quantity=2), saga_id=order_id)
    return {"saga_id": handle.saga_id}


@svc.post("/payments/{order_id}", status_code=202)
async def pay(order_id: str) -> dict[str, str]:
    await svc.publish(f"{MARK}-payments", Paid(order_id=order_id, amount=30), key=order_id)
    return {"published": order_id}
