"""The orders process SIGKILLed mid-load and restarted: every order ends final, invariants hold."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import httpx
import pytest

from tests.shop.conftest import Shop, check_invariants, order_body, wait_final

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.slow]


async def post_until_accepted(orders: httpx.AsyncClient, body: dict, key: str) -> str:
    """POST with an Idempotency-Key, retrying while the orders process is down."""
    deadline = time.monotonic() + 60
    while True:
        try:
            reply = await orders.post("/orders", json=body, headers={"Idempotency-Key": key})
            if reply.status_code == 202:
                return str(reply.json()["order_id"])
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"order {key} never accepted")
        await asyncio.sleep(0.1)


async def test_orders_killed_mid_load_recovers_every_order(shop: Shop) -> None:
    """SIGKILL of orders under load: after restart every order is CONFIRMED or CANCELLED."""
    skus = {}
    async with shop.client("inventory") as inventory:
        for name in ("x", "y"):
            sku = f"{name}-{uuid.uuid4().hex[:6]}"
            body = {"name": name, "price": 700, "available": 60}
            await inventory.put(f"/inventory/products/{sku}", json=body)
            skus[sku] = 60
    rng = random.Random(11)
    bodies = [order_body([(rng.choice(list(skus)), rng.randint(1, 2))],
                         rng.choice(["tok_visa"] * 8 + ["tok_decline", "tok_fail"]))
              for _ in range(150)]  # fmt: skip
    accepted = asyncio.Semaphore(0)
    gate = asyncio.Semaphore(20)

    async def place(orders: httpx.AsyncClient, body: dict) -> str:
        async with gate:
            order_id = await post_until_accepted(orders, body, uuid.uuid4().hex)
            accepted.release()
            return order_id

    async def crash() -> None:
        for _ in range(50):
            await accepted.acquire()
        shop.cluster.kill("orders")
        shop.start("orders")
        await asyncio.to_thread(shop.cluster.wait_ready, 60)

    async with shop.client("orders") as orders:
        crasher = asyncio.create_task(crash())
        order_ids = await asyncio.gather(*(place(orders, b) for b in bodies))
        await crasher
        final = await wait_final(orders, order_ids, timeout=60)
    assert len(set(order_ids)) == 150
    log = (shop.spans_dir / "orders.log").read_text()
    assert '"saga.recovered"' in log  # some sagas were interrupted and taken over
    await check_invariants(shop, skus, final)
