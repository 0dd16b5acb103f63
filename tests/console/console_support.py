"""A service with sagas and a consumer for the console tests, and a logged-in client."""

from __future__ import annotations

import re
from typing import Any

import httpx
from pydantic import BaseModel

import nativekit
from nativekit.messaging import Message
from nativekit.saga import Saga, SagaContext

TOKEN = "operator-token-for-tests-0123456789"
CONSOLE = "/_nativekit/console"


class Order(BaseModel):
    """Input."""

    order_id: str


class Paid(BaseModel):
    """A consumed event."""

    order_id: str
    amount: int


def shop(
    broken: dict[str, bool], handled: list[str], topic: str = "payments", **settings: Any
) -> nativekit.Service:
    """A service whose 'ship' saga parks FAILED (after its pivot) while ``broken['ship']``,
    and a consumer of 'payments' that dead-letters while ``broken['consumer']``."""
    options: dict[str, Any] = {
        "_env_file": None,
        "console": {"enabled": True},
        "auth": {"token": TOKEN, "token_subject": "alice"},
        "consumer": {"retries": 0},
    }
    options.update(settings)
    svc = nativekit.Service("orders", settings=nativekit.Settings(**options))
    saga: Saga[Order] = svc.saga("ship", input=Order)

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        return None

    @reserve.compensate(retries=0)
    async def release(ctx: SagaContext[Order]) -> None:
        if broken.get("release"):
            raise ConnectionError("inventory down")

    @saga.step()  # no compensation: a pivot, after which the saga only goes forward
    async def charge(ctx: SagaContext[Order]) -> None:
        return None

    @saga.step(retries=0)
    async def dispatch(ctx: SagaContext[Order]) -> None:
        if broken.get("ship"):
            raise ConnectionError("carrier down")

    @svc.consumer(topic)
    async def on_paid(event: Paid, msg: Message) -> None:
        if broken.get("consumer"):
            raise ValueError(f"no order {event.order_id}")
        handled.append(event.order_id)

    return svc


def csrf_of(page: str) -> str:
    """The CSRF token a rendered form carries."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def log_in(client: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    """Sign in through the login form like a browser."""
    form = await client.get(f"{CONSOLE}/login")
    return await client.post(f"{CONSOLE}/login", data={"csrf": csrf_of(form.text), "token": token})
