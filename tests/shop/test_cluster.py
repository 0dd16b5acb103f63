"""The shop as three processes on real Redis and Kafka: flows, idempotency, concurrency, traces."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest

from tests.shop.conftest import (
    Shop,
    charge_payment_id,
    check_invariants,
    order_body,
    wait_final,
)

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.slow]


async def stock(shop: Shop, **skus: int) -> dict[str, int]:
    """Create products with the given stock under fresh SKUs; returns sku -> stock."""
    created = {}
    async with shop.client("inventory") as inventory:
        for name, available in skus.items():
            sku = f"{name}-{uuid.uuid4().hex[:6]}"
            body = {"name": name, "price": 1000, "available": available}
            assert (await inventory.put(f"/inventory/products/{sku}", json=body)).status_code == 200
            created[sku] = available
    return created


async def place(shop: Shop, items: list[tuple[str, int]], token: str = "tok_visa") -> dict:
    """POST an order and wait for its final status."""
    async with shop.client("orders") as orders:
        reply = await orders.post("/orders", json=order_body(items, token),
                                  headers={"Prefer": "wait=10"})  # fmt: skip
        assert reply.status_code == 202, reply.text
        assert reply.headers["location"] == f"/orders/{reply.json()['order_id']}"
        return reply.json()


async def test_happy_path_confirms_charges_and_sells(shop: Shop) -> None:
    """An order with stock and a good card is CONFIRMED, charged once and its stock sold."""
    [sku] = await stock(shop, kettle=10)
    order = await place(shop, [(sku, 2)])
    assert order["status"] == "CONFIRMED" and order["total"] == 2000
    assert [s["name"] for s in order["steps"]] == [
        "accept_order", "reserve_stock", "fraud_review", "charge_payment", "confirm_order",
    ]  # fmt: skip
    async with shop.client("payments") as payments:
        payment = (await payments.get(f"/payments/{charge_payment_id(order['order_id'])}")).json()
    assert (payment["status"], payment["amount"]) == ("CAPTURED", 2000)
    await check_invariants(shop, {sku: 10}, [order])


async def test_declined_card_releases_stock_and_cancels(shop: Shop) -> None:
    """tok_decline cancels the order with the reason and gives the stock back."""
    [sku] = await stock(shop, mug=5)
    order = await place(shop, [(sku, 3)], token="tok_decline")
    assert (order["status"], order["reason"]) == ("CANCELLED", "card declined")
    steps = {s["name"]: s["status"] for s in order["steps"]}
    assert steps == {"accept_order": "compensated", "reserve_stock": "compensated",
                     "fraud_review": "completed",
                     "charge_payment": "failed", "confirm_order": "pending"}  # fmt: skip
    await check_invariants(shop, {sku: 5}, [order])


async def test_out_of_stock_cancels_without_charging(shop: Shop) -> None:
    """More than available cancels the order before any charge."""
    [sku] = await stock(shop, grinder=1)
    order = await place(shop, [(sku, 2)])
    assert order["status"] == "CANCELLED"
    assert order["reason"] == f"insufficient stock for {sku}"
    async with shop.client("payments") as payments:
        reply = await payments.get(f"/payments/{charge_payment_id(order['order_id'])}")
    assert reply.status_code == 404
    await check_invariants(shop, {sku: 1}, [order])


async def test_transient_payment_failure_is_retried(shop: Shop) -> None:
    """tok_fail fails the first charge attempt; the retry with the same key succeeds once."""
    [sku] = await stock(shop, scale=3)
    order = await place(shop, [(sku, 1)], token="tok_fail")
    assert order["status"] == "CONFIRMED"
    charge = next(s for s in order["steps"] if s["name"] == "charge_payment")
    assert charge["attempts"] == 2
    await check_invariants(shop, {sku: 3}, [order])


async def test_one_idempotency_key_gives_one_order(shop: Shop) -> None:
    """Concurrent and repeated POSTs with one key return one order, charged and sold once."""
    [sku] = await stock(shop, tin=10)
    headers = {"Idempotency-Key": uuid.uuid4().hex, "Prefer": "wait=10"}
    body = order_body([(sku, 1)])
    async with shop.client("orders") as orders:
        replies = await asyncio.gather(*(orders.post("/orders", json=body, headers=headers)
                                         for _ in range(5)))  # fmt: skip
        again = await orders.post("/orders", json=body, headers=headers)
        other = await orders.post("/orders", json=order_body([(sku, 2)]), headers=headers)
    ids = {r.json()["order_id"] for r in [*replies, again]}
    assert len(ids) == 1 and again.json()["status"] == "CONFIRMED"
    assert other.status_code == 422  # the key was used for a different order
    await check_invariants(shop, {sku: 10}, [again.json()])


async def test_200_concurrent_orders_never_oversell(shop: Shop) -> None:
    """200 concurrent orders for scarce stock: no oversell and every invariant holds."""
    initial = await stock(shop, a=25, b=25, c=25)
    skus = list(initial)
    rng = random.Random(7)
    tokens = ["tok_visa"] * 8 + ["tok_decline", "tok_fail"]
    bodies = [order_body([(sku, rng.randint(1, 2)) for sku in rng.sample(skus, rng.randint(1, 2))],
                         rng.choice(tokens)) for _ in range(200)]  # fmt: skip
    async with shop.client("orders") as orders:
        replies = await asyncio.gather(*(orders.post("/orders", json=b) for b in bodies))
        assert {r.status_code for r in replies} == {202}
        final = await wait_final(orders, [r.json()["order_id"] for r in replies], timeout=60)
    statuses = [o["status"] for o in final]
    assert statuses.count("CONFIRMED") > 0
    reasons = {o["reason"] for o in final if o["status"] == "CANCELLED"}
    assert "card declined" in reasons
    assert any(r.startswith("insufficient stock") for r in reasons)  # stock ran out
    await check_invariants(shop, initial, final)


async def test_one_trace_spans_the_order_across_services(shop: Shop) -> None:
    """The trace id sent with POST /orders appears in spans of orders, payments and inventory."""
    [sku] = await stock(shop, spoon=2)
    trace_id = uuid.uuid4().hex
    headers = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01", "Prefer": "wait=10"}
    async with shop.client("orders") as orders:
        reply = await orders.post("/orders", json=order_body([(sku, 1)]), headers=headers)
    assert reply.json()["status"] == "CONFIRMED"
    deadline = time.monotonic() + 15
    while True:
        spans = [s for s in shop.spans() if s["trace_id"] == trace_id]
        names = {(s["service"], s["name"]) for s in spans}
        expected = {
            ("orders", "saga place-order"),
            ("payments", "POST /payments"),
            ("inventory", f"shop-{shop.tag}.inventory.commands process"),  # reserve_stock
            ("inventory", f"shop-{shop.tag}.orders process"),  # OrderConfirmed -> sale
        }
        if expected <= names or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert expected <= names, sorted(names)
