"""The shop with 3 orders replicas and 2 each of payments and inventory (separate
processes) on a Redis Cluster and topics of 6 partitions; one orders replica SIGKILLed
with its orders in flight: the other replicas recover its sagas (leases), its reply
partitions move to them (rebalance), and the shop's invariants hold (stock adds up,
nothing stays reserved, a confirmed order is paid its total, no other is charged)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.shop.cluster import (
    Cluster,
    create_topics,
    replica_ports,
    shop_topics,
    start_replicas,
)
from examples.shop.models import payment_id_for
from nativekit.testing import servers
from tests.shop.conftest import cluster_env

pytestmark = [
    pytest.mark.redis,
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.scale,
    pytest.mark.timeout(400),
]
STOCK = 1000
ORDERS = 45
FINAL = ("CONFIRMED", "CANCELLED")


@pytest.fixture
def shop(
    redis_cluster: servers.RedisClusterServer, kafka_url: str, tmp_path: Path
) -> Iterator[tuple[Cluster, str]]:
    """The replicas, on the test cluster and broker; stopped afterwards."""
    tag = uuid.uuid4().hex[:10]
    env = cluster_env(
        redis_cluster.url, kafka_url, tag, NATIVEKIT_SAGA_LEASE_SECONDS="3",
        NATIVEKIT_SAGA_RECOVERY_INTERVAL_SECONDS="0.5",
    )  # fmt: skip
    create_topics(kafka_url, shop_topics(env, f"orders-{tag}"), 6)
    cluster = Cluster(env, ports=replica_ports(3, 2), log_dir=tmp_path)
    try:
        start_replicas(cluster, suffix=f"-{tag}")
        cluster.wait_ready(180)
        yield cluster, tag
    finally:
        cluster.stop()
        servers.delete_topics_now(kafka_url, [f"shop-{tag}.", f"orders-{tag}."])


async def post_order(
    clients: dict[str, httpx.AsyncClient], first: str, body: dict[str, Any], key: str
) -> dict[str, Any]:
    """POST /orders to ``first``, then to the other orders replicas while it is down (the
    Idempotency-Key makes every try the same order)."""
    names = [first] + [n for n in clients if n != first]
    for name in itertools.islice(itertools.cycle(names), 30):
        try:
            reply = await clients[name].post("/orders", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            await asyncio.sleep(0.2)
            continue
        assert reply.status_code == 202, reply.text
        return dict(reply.json())
    raise AssertionError(f"no orders replica took order {key}")


async def test_an_orders_replica_killed_mid_load(shop: tuple[Cluster, str]) -> None:
    """45 orders spread over 3 orders replicas; orders-2 is SIGKILLed right after taking
    its share: every order ends CONFIRMED or CANCELLED and the invariants hold."""
    cluster, _ = shop
    names = ["orders-1", "orders-2", "orders-3"]
    clients = {n: httpx.AsyncClient(base_url=cluster.url(n), timeout=30) for n in names}
    inventory = httpx.AsyncClient(base_url=cluster.url("inventory-1"), timeout=30)
    payments = httpx.AsyncClient(base_url=cluster.url("payments-2"), timeout=30)
    skus = [f"R-{n}" for n in range(4)]
    try:
        for sku in skus:
            body = {"name": sku, "price": 700, "available": STOCK}
            assert (await inventory.put(f"/inventory/products/{sku}", json=body)).status_code == 200
        bodies = [
            {"customer_id": f"c-{i}", "payment_token": "tok_decline" if i % 9 == 4 else "tok_visa",
             "items": [{"sku": skus[i % 4], "quantity": 1 + i % 3}]}
            for i in range(ORDERS)
        ]  # fmt: skip
        placed = await asyncio.gather(*(
            post_order(clients, names[i % 3], b, f"k-{i}") for i, b in enumerate(bodies)
        ))  # fmt: skip
        in_flight = [o for i, o in enumerate(placed) if i % 3 == 1 and o["status"] not in FINAL]
        cluster.kill("orders-2")  # with the sagas it started and the partitions it owned
        await clients.pop("orders-2").aclose()
        final = await wait_final(clients["orders-1"], [o["order_id"] for o in placed], 240)
        assert in_flight, "orders-2 had no order in flight when killed: the test proved little"
        await check_invariants(inventory, payments, skus, list(final.values()))
    finally:
        for client in (*clients.values(), inventory, payments):
            await client.aclose()


async def wait_final(
    orders: httpx.AsyncClient, ids: list[str], within: float
) -> dict[str, dict[str, Any]]:
    """Poll until every order is CONFIRMED or CANCELLED."""
    deadline = time.monotonic() + within
    final: dict[str, dict[str, Any]] = {}
    while True:
        for order_id in ids:
            if order_id not in final:
                order = (await orders.get(f"/orders/{order_id}")).json()
                if order["status"] in FINAL:
                    final[order_id] = order
        if len(final) == len(ids):
            return final
        pending = sorted(set(ids) - set(final))
        assert time.monotonic() < deadline, f"orders not final within {within:g}s: {pending}"
        await asyncio.sleep(0.5)


async def check_invariants(
    inventory: httpx.AsyncClient,
    payments: httpx.AsyncClient,
    skus: list[str],
    orders: list[dict[str, Any]],
) -> None:
    """Stock adds up with nothing reserved; payments match the orders' outcomes."""
    deadline = time.monotonic() + 60
    while True:
        products = [(await inventory.get(f"/inventory/products/{s}")).json() for s in skus]
        if all(p["reserved"] == 0 for p in products) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    sold = dict.fromkeys(skus, 0)
    for order in orders:
        if order["status"] == "CONFIRMED":
            for item in order["items"]:
                sold[item["sku"]] += item["quantity"]
    for product in products:
        assert product["reserved"] == 0, product
        assert product["available"] + product["sold"] == STOCK, product
        assert product["sold"] == sold[product["sku"]], (product, sold)
    assert any(o["status"] == "CONFIRMED" for o in orders)
    assert any(o["status"] == "CANCELLED" for o in orders)
    for order in orders:
        payment_id = payment_id_for(f"{order['order_id']}:charge_payment:forward")
        reply = await payments.get(f"/payments/{payment_id}")
        payment = reply.json() if reply.status_code == 200 else None
        status = payment["status"] if payment else None
        if order["status"] == "CONFIRMED":
            assert status == "CAPTURED" and payment["amount"] == order["total"], (order, payment)
        else:
            assert status in (None, "DECLINED", "REFUNDED", "VOIDED"), (order, payment)
