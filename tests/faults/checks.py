"""The invariants after a fault, read through the shop's public HTTP API (and the
dead-letter topics on the broker, where an operator reads them with ``nativekit dlq``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

FINAL = ("CONFIRMED", "CANCELLED")


@dataclass
class Outcome:
    """The invariants of one fault run, and how long the shop took to get there."""

    orders: int = 0
    confirmed: int = 0
    cancelled: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    final_after: float = 0.0
    settled_after: float = 0.0
    problems: list[str] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)


async def get_json(client: httpx.AsyncClient, path: str) -> Any:
    """GET that waits out a service still coming back (the fault is over, not its effects)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = await client.get(path)
            if reply.status_code < 500:
                reply.raise_for_status()
                return reply.json()
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"GET {path} kept failing"
        await asyncio.sleep(0.2)


async def wait_final(
    orders: httpx.AsyncClient, order_ids: list[str], deadline: float
) -> dict[str, dict[str, Any]]:
    """Every order's view once all are CONFIRMED or CANCELLED, or what stands at ``deadline``."""
    done: dict[str, dict[str, Any]] = {}
    gate = asyncio.Semaphore(16)

    async def one(order_id: str) -> None:
        async with gate:
            view = await get_json(orders, f"/orders/{order_id}")
        if view["status"] in FINAL:
            done[order_id] = view

    while True:
        await asyncio.gather(*(one(o) for o in order_ids if o not in done))
        if len(done) == len(order_ids) or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.3)


async def check_invariants(
    clients: dict[str, httpx.AsyncClient],
    initial: dict[str, int],
    order_ids: list[str],
    fault_over: float,
    budget: float = 60.0,
) -> Outcome:
    """Wait up to ``budget`` seconds after ``fault_over`` for every order to be final and
    the stock to settle, then check every invariant; problems are listed, not raised."""
    out = Outcome(orders=len(order_ids))
    deadline = fault_over + budget
    views = await wait_final(clients["orders"], order_ids, deadline)
    out.final_after = time.monotonic() - fault_over
    stuck = [o for o in order_ids if o not in views]
    if stuck:
        out.problems.append(f"{len(stuck)} order(s) not final after {budget:g}s: {stuck[:3]}")
    confirmed = [v for v in views.values() if v["status"] == "CONFIRMED"]
    cancelled = [v for v in views.values() if v["status"] == "CANCELLED"]
    out.confirmed, out.cancelled = len(confirmed), len(cancelled)
    out.reasons = Counter(_reason(v.get("reason")) for v in cancelled)
    sold = dict.fromkeys(initial, 0)
    for view in confirmed:
        for item in view["items"]:
            sold[item["sku"]] += item["quantity"]

    # the sale of a confirmed order is made by a consumer: the stock settles after
    while True:
        products = {s: await get_json(clients["inventory"], f"/inventory/products/{s}")
                    for s in initial}  # fmt: skip
        if all(p["reserved"] == 0 and p["sold"] == sold[s] for s, p in products.items()):
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    out.settled_after = time.monotonic() - fault_over
    for sku, p in products.items():
        if p["available"] < 0:
            out.problems.append(f"{sku} oversold: available {p['available']}")
        if p["reserved"] != 0:
            out.problems.append(f"{sku}: {p['reserved']} still reserved at rest")
        if p["available"] != initial[sku] - sold[sku]:
            out.problems.append(
                f"{sku}: available {p['available']} != {initial[sku]} - confirmed {sold[sku]}"
            )
        if p["sold"] != sold[sku]:
            out.problems.append(f"{sku}: sold {p['sold']} != confirmed {sold[sku]}")

    gate = asyncio.Semaphore(16)

    async def payments_of(order_id: str) -> list[dict[str, Any]]:
        async with gate:
            result: list[dict[str, Any]] = await get_json(
                clients["payments"], f"/payments?order_id={order_id}"
            )
            return result

    every = await asyncio.gather(*map(payments_of, views))
    for view, pays in zip(views.values(), every, strict=True):
        captured = [p for p in pays if p["status"] == "CAPTURED"]
        if view["status"] == "CONFIRMED":
            if len(captured) != 1 or captured[0]["amount"] != view["total"]:
                out.problems.append(f"confirmed {view['order_id']} total {view['total']}: {pays}")
        elif captured:
            out.problems.append(f"cancelled {view['order_id']} has a capture: {captured}")

    while True:  # the outbox drains (the relay publishes what the sagas wrote)
        ready = await get_json(clients["orders"], "/readyz")
        backlog = ready.get("checks", {}).get("outbox", [{}])[0].get("observedValue")
        if backlog == 0:
            break
        if time.monotonic() > deadline:
            out.problems.append(f"outbox backlog {backlog} after {budget:g}s")
            break
        await asyncio.sleep(0.3)
    return out


def _reason(reason: str | None) -> str:
    text = (reason or "?").lower()
    for short in ("declined", "not enough", "out of stock", "timed out", "unavailable"):
        if short in text:
            return short
    return text[:60]


async def dead_letters(bootstrap: str, prefix: str) -> dict[str, list[str]]:
    """Every record of the dead-letter topics named ``prefix…``: topic -> reasons."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix) and ".dlq" in t]
    finally:
        await admin.close()
    found: dict[str, list[str]] = {}
    if not topics:
        return found
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, for partitions_for_topic
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or {0}
        ]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=2000)
                for record in batch.get(tp, []):
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    found.setdefault(tp.topic, []).append(
                        f"{headers.get('dlq-error-type')}: {headers.get('dlq-error-message')}"
                        f" (offset {record.offset})"
                    )
                if not batch:
                    break
    finally:
        await consumer.stop()
    return found
