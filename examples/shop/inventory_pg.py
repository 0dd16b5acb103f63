"""Inventory stock in PostgreSQL (``SHOP_DATABASE_URL``): products and reservations as rows,
written in the transaction nativekit hands the command handler, so a reservation commits
together with the stored reply to the saga's command (or neither does).

The shop's own tables live in schema ``shop_inventory`` (nativekit's in its own schema).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import nativekit
from examples.shop.inventory_store import merge
from examples.shop.models import Item, Product, Reservation

SCHEMA = "shop_inventory"
TABLES = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.products (
    sku text PRIMARY KEY, name text NOT NULL, price int NOT NULL,
    available int NOT NULL CHECK (available >= 0), reserved int NOT NULL CHECK (reserved >= 0),
    sold int NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS {schema}.reservations (
    order_id text PRIMARY KEY, state text NOT NULL, reason text, held jsonb);
"""
T = TypeVar("T")


def _product(row: Any) -> Product:
    return Product(**dict(row))


class PostgresInventoryStore:
    """The inventory store on the service's PostgreSQL (see ``InventoryStore``).

    Each method takes the caller's transaction (a command handler's), or opens one.
    """

    def __init__(self, svc: nativekit.Service, schema: str = SCHEMA) -> None:
        self.svc = svc
        self.schema = schema

    async def _in(
        self,
        tx: nativekit.Transaction | None,
        work: Callable[[nativekit.Transaction], Awaitable[T]],
    ) -> T:
        if tx is not None:
            return await work(tx)
        async with self.svc.transaction() as own:
            return await work(own)

    async def create_tables(self) -> None:
        """The shop's tables (the example's own; nativekit's come from its migrations)."""
        async with self.svc.transaction() as tx:
            await tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.schema)
            await tx.execute(TABLES.format(schema=self.schema))

    async def put(self, sku: str, name: str, price: int, available: int) -> Product:
        async with self.svc.transaction() as tx:
            row = await tx.fetchrow(
                f"INSERT INTO {self.schema}.products (sku, name, price, available, reserved) "
                "VALUES ($1, $2, $3, $4, 0) ON CONFLICT (sku) DO UPDATE SET name = $2, "
                "price = $3, available = $4 RETURNING sku, name, price, available, reserved, sold",
                sku, name, price, available,
            )  # fmt: skip
        return _product(row)

    async def add_if_missing(self, product: Product) -> None:
        async with self.svc.transaction() as tx:
            await tx.execute(
                f"INSERT INTO {self.schema}.products (sku, name, price, available, reserved, sold) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sku) DO NOTHING",
                product.sku, product.name, product.price, product.available,
                product.reserved, product.sold,
            )  # fmt: skip

    async def get(self, sku: str) -> Product | None:
        async with self.svc.transaction() as tx:
            row = await tx.fetchrow(
                "SELECT sku, name, price, available, reserved, sold "
                f"FROM {self.schema}.products WHERE sku = $1",
                sku,
            )
        return _product(row) if row is not None else None

    async def all(self) -> list[Product]:
        async with self.svc.transaction() as tx:
            rows = await tx.fetch(
                f"SELECT sku, name, price, available, reserved, sold FROM {self.schema}.products "
                "ORDER BY sku"
            )
        return [_product(r) for r in rows]

    async def reserve(
        self, order_id: str, items: Sequence[Item], tx: nativekit.Transaction | None = None
    ) -> Reservation:
        async def work(tx: nativekit.Transaction) -> Reservation:
            current = await tx.fetchrow(
                f"SELECT state, reason FROM {self.schema}.reservations "
                "WHERE order_id = $1 FOR UPDATE",
                order_id,
            )
            if current is not None:
                return Reservation(order_id=order_id, **dict(current))
            wanted = merge(items)
            rows = await tx.fetch(  # locks the products, in SKU order (no deadlocks)
                f"SELECT sku, available FROM {self.schema}.products WHERE sku = ANY($1::text[]) "
                "ORDER BY sku FOR UPDATE",
                list(wanted),
            )
            available = {r["sku"]: r["available"] for r in rows}
            for sku, quantity in wanted.items():
                if available.get(sku, -1) < quantity:
                    reason = (
                        f"insufficient stock for {sku}" if sku in available
                        else f"unknown product {sku}"
                    )  # fmt: skip
                    return await self._record(tx, order_id, "REJECTED", reason, None)
            await tx.executemany(
                f"UPDATE {self.schema}.products SET available = available - $2, "
                "reserved = reserved + $2 WHERE sku = $1",
                list(wanted.items()),
            )
            return await self._record(tx, order_id, "RESERVED", None, wanted)

        return await self._in(tx, work)

    async def _record(
        self,
        tx: nativekit.Transaction,
        order_id: str,
        state: str,
        reason: str | None,
        held: dict[str, int] | None,
    ) -> Reservation:
        await tx.execute(
            f"INSERT INTO {self.schema}.reservations (order_id, state, reason, held) "
            "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (order_id) DO UPDATE SET state = $2, "
            "reason = $3, held = $4::jsonb",
            order_id, state, reason, json.dumps(held) if held is not None else None,
        )  # fmt: skip
        return Reservation(order_id=order_id, state=state, reason=reason)  # type: ignore[arg-type]

    async def _finish(
        self, order_id: str, state: str, column: str, tx: nativekit.Transaction | None
    ) -> tuple[Reservation, list[str]]:
        async def work(tx: nativekit.Transaction) -> tuple[Reservation, list[str]]:
            current = await tx.fetchrow(
                f"SELECT state, reason, held::text AS held FROM {self.schema}.reservations "
                "WHERE order_id = $1 FOR UPDATE",
                order_id,
            )
            if current is None:
                if state == "SOLD":  # nothing to sell: no tombstone
                    return Reservation(
                        order_id=order_id, state="REJECTED", reason="no reservation"
                    ), []
                # the release overtook its reservation: refuse that one later
                return await self._record(tx, order_id, "RELEASED", "released first", None), []
            if current["state"] != "RESERVED":
                return Reservation(
                    order_id=order_id, state=current["state"], reason=current["reason"]
                ), []
            held: dict[str, int] = json.loads(current["held"])
            await tx.executemany(
                f"UPDATE {self.schema}.products SET reserved = reserved - $2, "
                f"{column} = {column} + $2 WHERE sku = $1",
                sorted(held.items()),
            )
            return await self._record(tx, order_id, state, None, held), sorted(held)

        return await self._in(tx, work)

    async def release(
        self, order_id: str, tx: nativekit.Transaction | None = None
    ) -> tuple[Reservation, list[str]]:
        return await self._finish(order_id, "RELEASED", "available", tx)

    async def sell(
        self, order_id: str, tx: nativekit.Transaction | None = None
    ) -> tuple[Reservation, list[str]]:
        return await self._finish(order_id, "SOLD", "sold", tx)
