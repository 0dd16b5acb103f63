"""Contract of the shop's stores, run against the memory reference, real Redis and (inventory)
real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import nativekit
from examples.shop.inventory_pg import PostgresInventoryStore
from examples.shop.inventory_store import MemoryInventoryStore, RedisInventoryStore
from examples.shop.models import Item, Payment
from examples.shop.payments_store import MemoryPaymentStore, RedisPaymentStore


def items(*lines: tuple[str, int]) -> list[Item]:
    """Order lines."""
    return [Item(sku=s, quantity=q) for s, q in lines]


class InventoryContract:
    """What every inventory store does."""

    async def test_reserve_holds_every_line_or_none(self, inventory: Any) -> None:
        """A reservation short on one line holds nothing and says which SKU is short."""
        await inventory.put("a", "A", 100, 5)
        await inventory.put("b", "B", 100, 1)
        rejected = await inventory.reserve("o1", items(("a", 2), ("b", 2)))
        assert (rejected.state, rejected.reason) == ("REJECTED", "insufficient stock for b")
        assert (await inventory.get("a")).available == 5
        held = await inventory.reserve("o2", items(("a", 2), ("a", 1), ("b", 1)))
        assert held.state == "RESERVED"
        a, b = await inventory.get("a"), await inventory.get("b")
        assert (a.available, a.reserved, b.available, b.reserved) == (2, 3, 0, 1)

    async def test_reserve_release_and_sell_apply_once(self, inventory: Any) -> None:
        """Repeating reserve, release or sell changes stock once."""
        await inventory.put("a", "A", 100, 5)
        for _ in range(2):
            await inventory.reserve("o1", items(("a", 2)))
            await inventory.reserve("o2", items(("a", 1)))
        for _ in range(2):
            assert (await inventory.release("o1"))[0].state == "RELEASED"
            assert (await inventory.sell("o2"))[0].state == "SOLD"
        a = await inventory.get("a")
        assert (a.available, a.reserved, a.sold) == (4, 0, 1)

    async def test_release_and_sell_name_the_skus_whose_stock_moved(self, inventory: Any) -> None:
        """Release and sale report the held SKUs once; a repeat or a no-op reports none."""
        await inventory.put("a", "A", 100, 5)
        await inventory.put("b", "B", 100, 5)
        await inventory.reserve("o1", items(("b", 1), ("a", 2)))
        await inventory.reserve("o2", items(("a", 1)))
        assert sorted((await inventory.release("o1"))[1]) == ["a", "b"]
        assert (await inventory.release("o1"))[1] == []
        assert (await inventory.sell("o2"))[1] == ["a"]
        assert (await inventory.sell("o2"))[1] == []
        assert (await inventory.sell("missing"))[1] == []
        assert (await inventory.release("early"))[1] == []

    async def test_release_before_reserve_refuses_the_late_reservation(
        self, inventory: Any
    ) -> None:
        """A compensation that overtook its action makes the late action fail."""
        await inventory.put("a", "A", 100, 5)
        await inventory.release("o1")
        assert (await inventory.reserve("o1", items(("a", 1)))).state == "RELEASED"
        assert (await inventory.sell("missing"))[0].state == "REJECTED"
        assert (await inventory.get("a")).available == 5

    async def test_concurrent_reservations_never_oversell(self, inventory: Any) -> None:
        """50 concurrent reservations for 10 units hold exactly 10."""
        await inventory.put("a", "A", 100, 10)
        results = await asyncio.gather(
            *(inventory.reserve(f"o{n}", items(("a", 1))) for n in range(50))
        )
        assert sum(r.state == "RESERVED" for r in results) == 10
        a = await inventory.get("a")
        assert (a.available, a.reserved) == (0, 10)
        assert [p.sku for p in await inventory.all()] == ["a"]


class PaymentContract:
    """What every payment store does."""

    async def test_first_payment_per_id_wins(self, payments: Any) -> None:
        """add_if_missing keeps the first payment of an id."""
        first = Payment(payment_id="p1", order_id="o", amount=5, status="CAPTURED")
        again = first.model_copy(update={"amount": 9})
        assert await payments.add_if_missing(first) == first
        assert await payments.add_if_missing(again) == first
        assert await payments.all() == [first]

    async def test_refund_once_and_void_unknown(self, payments: Any) -> None:
        """A capture is refunded once; refunding an unknown id voids it."""
        await payments.add_if_missing(
            Payment(payment_id="p1", order_id="o", amount=5, status="CAPTURED")
        )
        assert [(await payments.refund("p1", "o"))[1] for _ in range(2)] == [True, False]
        voided, refunded = await payments.refund("p2", "o")
        assert (voided.status, refunded) == ("VOIDED", False)
        late = Payment(payment_id="p2", order_id="o", amount=5, status="CAPTURED")
        assert (await payments.add_if_missing(late)).status == "VOIDED"

    async def test_first_attempt_is_counted_per_id(self, payments: Any) -> None:
        """Only the first attempt of an id is the first."""
        assert [await payments.first_attempt("p") for _ in range(2)] == [True, False]


class TestMemoryStores(InventoryContract, PaymentContract):
    """The in-process reference."""

    @pytest.fixture
    def inventory(self) -> MemoryInventoryStore:
        """A fresh memory store."""
        return MemoryInventoryStore()

    @pytest.fixture
    def payments(self) -> MemoryPaymentStore:
        """A fresh memory store."""
        return MemoryPaymentStore()


@pytest.mark.redis
@pytest.mark.postgres
class TestPostgresInventory(InventoryContract):
    """Inventory in PostgreSQL (SHOP_DATABASE_URL), through svc.transaction()."""

    @pytest.fixture
    async def inventory(self, postgres_url: str, unique: str) -> AsyncIterator[Any]:
        """A store in a schema of this test's own, dropped afterwards."""
        svc = nativekit.Service(
            "inventory", settings=nativekit.Settings(database={"url": postgres_url})
        )
        store = PostgresInventoryStore(svc, schema=f"inv_{unique}")
        await store.create_tables()
        yield store
        async with svc.transaction() as tx:
            await tx.execute(f"DROP SCHEMA {store.schema} CASCADE")
        await svc.backends.aclose()


class TestRedisStores(InventoryContract, PaymentContract):
    """Real Redis, keys under a unique prefix."""

    @pytest.fixture
    async def redis(self, redis_url: str, unique: str) -> AsyncIterator[Any]:
        """A client; the test's keys are deleted afterwards."""
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_url)
        yield client
        keys = [k async for k in client.scan_iter(match=f"{{shop-{unique}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    @pytest.fixture
    def inventory(self, redis: Any, unique: str) -> RedisInventoryStore:
        """A Redis store under a unique prefix."""
        return RedisInventoryStore(redis, f"shop-{unique}")

    @pytest.fixture
    def payments(self, redis: Any, unique: str) -> RedisPaymentStore:
        """A Redis store under a unique prefix."""
        return RedisPaymentStore(redis, f"shop-{unique}")
