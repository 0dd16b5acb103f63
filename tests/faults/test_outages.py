"""Outages of a shared server: Redis restarted, the broker away, a service started while its
Redis link is a blackhole.

The fault tests place orders under load through the shop's public HTTP API, apply the
fault mid-load and then check every invariant (tests/faults/run.py, docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.faults import all_ready, cpu_seconds
from tests.faults.run import MARKS, fault_test
from tests.faults.shop import FaultShop

pytestmark = MARKS


@pytest.mark.parametrize("name", ["redis-restart", "broker-outage"])
async def test_fault(fault_shop: FaultShop, name: str) -> None:
    """Redis restarted, or the broker away, mid-load: every invariant holds after."""
    await fault_test(fault_shop, name)


async def test_orders_starts_while_its_redis_is_blackholed(fault_shop: FaultShop) -> None:
    """orders restarted while its link to Redis is a blackhole: live at once, not ready
    (``sagas:definitions`` and ``redis:ping`` fail, saying why), ready once Redis answers."""
    import httpx

    from tests.faults.faults import wait_ready
    from tests.faults.infra import Trouble

    shop = fault_shop
    await all_ready(shop)
    shop.terminate("orders")
    shop.redis_proxy.set("orders", Trouble(blackhole=True))
    try:
        shop.start("orders")
        async with httpx.AsyncClient(base_url=shop.url("orders"), timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/livez")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, shop.log("orders")[-2000:]
                await asyncio.sleep(0.02)
            live_cpu = cpu_seconds(shop.cluster.processes["orders"].pid)
            await asyncio.sleep(1.0)
            ready = await client.get("/readyz")
            startup = await client.get("/startupz")
    finally:
        shop.redis_proxy.heal()
    assert live_cpu < 2.0, live_cpu
    assert ready.status_code == 503, ready.text
    [definitions] = ready.json()["checks"]["sagas:definitions"]
    assert definitions["status"] == "fail"
    assert definitions["output"].startswith("waiting for the saga store to check definitions")
    assert startup.status_code == 503 and "sagas:definitions" in startup.json()["checks"]
    restart = await wait_ready(shop, "orders", timeout=60)
    assert restart.ready_after < 60
