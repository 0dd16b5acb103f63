"""The shop as three real processes on real Redis and Kafka, and helpers to drive it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.shop.cluster import Cluster
from examples.shop.models import payment_id_for
from nativekit.testing import servers

TRACED = Path(__file__).with_name("traced.py")
FINAL = ("CONFIRMED", "CANCELLED")


def cluster_env(redis_url: str, kafka_url: str, tag: str, **extra: str) -> dict[str, str]:
    """Environment isolating one cluster's keys, topics, groups and cache on shared servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATIVEKIT_", "SHOP_"))}
    env.update(
        NATIVEKIT_REDIS_URL=redis_url,
        NATIVEKIT_KAFKA_URL=kafka_url,
        NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER="false",
        NATIVEKIT_ENVIRONMENT="test",
        NATIVEKIT_HTTP_ACCESS_LOG="false",
        NATIVEKIT_CONSUMER_SESSION_TIMEOUT_SECONDS="6",
        NATIVEKIT_CONSUMER_FETCH_MAX_WAIT_SECONDS="0.01",
        SHOP_KEY_PREFIX=f"shop-{tag}",
        SHOP_TOPIC_PREFIX=f"shop-{tag}.",
        SHOP_SEED_PRODUCTS="2",
        PYTHONPATH=str(Path(__file__).parents[2]),
        **extra,
    )
    return env


class Shop:
    """A running cluster plus an HTTP client for each service."""

    def __init__(self, cluster: Cluster, tag: str, spans_dir: Path) -> None:
        self.cluster = cluster
        self.tag = tag
        self.spans_dir = spans_dir

    def start(self, service: str) -> None:
        """Start a service named ``<service>-<tag>`` (its own saga keys, group and cache)."""
        self.cluster.start(service, {"NATIVEKIT_SERVICE_NAME": f"{service}-{self.tag}"})

    def client(self, service: str, **kwargs: Any) -> httpx.AsyncClient:
        """A client for one service."""
        limits = httpx.Limits(max_connections=100)
        return httpx.AsyncClient(base_url=self.cluster.url(service), timeout=30, limits=limits,
                                 **kwargs)  # fmt: skip

    def spans(self) -> list[dict[str, Any]]:
        """Every span exported so far by the three processes."""
        import json

        lines: list[dict[str, Any]] = []
        for path in self.spans_dir.glob("*.jsonl"):
            lines.extend(json.loads(line) for line in path.read_text().splitlines() if line)
        return lines


@pytest.fixture(scope="module")
def shop(
    redis_url: str, kafka_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    """orders, payments and inventory as separate uvicorn processes, spans exported to files."""
    tag = uuid.uuid4().hex[:10]
    workdir = tmp_path_factory.mktemp(f"shop-{tag}")
    ports = {name: servers.free_port() for name in ("orders", "payments", "inventory")}

    def command(service: str, port: int) -> list[str]:
        return [sys.executable, str(TRACED), service, str(port), str(workdir / f"{service}.jsonl")]

    env = cluster_env(
        redis_url, kafka_url, tag, NATIVEKIT_SAGA_LEASE_SECONDS="3",
        NATIVEKIT_SAGA_RECOVERY_INTERVAL_SECONDS="0.5",
    )  # fmt: skip
    cluster = Cluster(env, ports=ports, command=command, log_dir=workdir)
    running = Shop(cluster, tag, workdir)
    try:
        for service in ports:
            running.start(service)
        cluster.wait_ready(60)
        yield running
    finally:
        cluster.stop()
        delete_keys(redis_url, tag)
        servers.delete_topics_now(kafka_url, [f"shop-{tag}."])


def delete_keys(redis_url: str, tag: str) -> None:
    """Remove every key of one cluster (shop data, sagas, cache, dedup marks) from Redis."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"*{tag}*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
    finally:
        client.close()


def order_body(items: list[tuple[str, int]], token: str = "tok_visa") -> dict[str, Any]:
    """A POST /orders body."""
    return {
        "customer_id": "c-1",
        "items": [{"sku": sku, "quantity": q} for sku, q in items],
        "payment_token": token,
    }


def charge_payment_id(order_id: str) -> str:
    """The payment id of an order's charge step."""
    return payment_id_for(f"{order_id}:charge_payment:forward")


async def wait_final(
    orders: httpx.AsyncClient,
    order_ids: list[str],
    timeout: float,  # noqa: ASYNC109
) -> list[dict[str, Any]]:
    """Poll until every order is CONFIRMED or CANCELLED; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while True:
        pending = [o for o in order_ids if o not in done]
        replies = await asyncio.gather(*(orders.get(f"/orders/{o}") for o in pending))
        for order_id, reply in zip(pending, replies, strict=True):
            if reply.status_code == 200 and reply.json()["status"] in FINAL:
                done[order_id] = reply.json()
        if len(done) == len(order_ids):
            return [done[o] for o in order_ids]
        if time.monotonic() > deadline:
            stuck = {o: r.json().get("status") for o, r in zip(pending, replies, strict=True)}
            raise AssertionError(f"orders not final after {timeout}s: {list(stuck.items())[:5]}")
        await asyncio.sleep(0.2)


async def check_invariants(
    shop: Shop,
    initial: dict[str, int],
    orders: list[dict[str, Any]],
    timeout: float = 30,  # noqa: ASYNC109
) -> None:
    """At rest: no oversell; per SKU initial = available + reserved + sold with nothing left
    reserved and sold = confirmed quantities; captured payments = confirmed totals; every
    cancelled order that was charged is refunded."""
    confirmed = [o for o in orders if o["status"] == "CONFIRMED"]
    sold_by_sku = dict.fromkeys(initial, 0)
    for order in confirmed:
        for item in order["items"]:
            sold_by_sku[item["sku"]] += item["quantity"]
    deadline = time.monotonic() + timeout
    async with shop.client("inventory") as inventory, shop.client("payments") as payments:
        while True:  # sales are made by a consumer: wait for them to arrive
            products = {sku: (await inventory.get(f"/inventory/products/{sku}")).json()
                        for sku in initial}  # fmt: skip
            settled = all(p["reserved"] == 0 for p in products.values())
            if settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        for sku, product in products.items():
            assert product["available"] >= 0, product
            assert product["available"] + product["reserved"] + product["sold"] == initial[sku]
            assert product["reserved"] == 0, product
            assert product["sold"] == sold_by_sku[sku], (product, sold_by_sku[sku])
        replies = await asyncio.gather(
            *(payments.get(f"/payments/{charge_payment_id(o['order_id'])}") for o in orders)
        )
    captured = 0
    for order, reply in zip(orders, replies, strict=True):
        payment = reply.json() if reply.status_code == 200 else None
        if order["status"] == "CONFIRMED":
            assert payment is not None and payment["status"] == "CAPTURED", (order, reply.text)
            assert payment["amount"] == order["total"]
            captured += payment["amount"]
        elif payment is not None:
            assert payment["status"] in ("DECLINED", "REFUNDED", "VOIDED"), (order, payment)
    assert captured == sum(o["total"] for o in confirmed)
