"""The inventory service: products, cached reads, atomic reservations, sales on confirm."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import nativekit
from examples.shop.config import config
from examples.shop.inventory_pg import PostgresInventoryStore
from examples.shop.inventory_store import (
    InventoryStore,
    MemoryInventoryStore,
    RedisInventoryStore,
    merge,
)
from examples.shop.models import (
    Item,
    OrderConfirmed,
    Product,
    ProductUpdate,
    ReleaseStock,
    Reservation,
    ReserveStock,
    StockReleased,
    StockReserved,
    StockSold,
)
from nativekit import Transaction


def _settings() -> nativekit.Settings | None:
    """With SHOP_DATABASE_URL, nativekit keeps inventory's sagas' replies and DONE marks in
    the same PostgreSQL as the stock (migrating its schema at startup)."""
    if not config.database_url:
        return None
    return nativekit.Settings(
        database={"url": config.database_url, "schema_name": "nativekit_inventory",
                  "migrate_on_start": True},
    )  # fmt: skip


svc = nativekit.Service("inventory", settings=_settings())
#: Stock changes, announced for other services (the AsyncAPI document lists them).
stock_events = svc.publisher(
    config.topic("inventory"), StockReserved, StockReleased, StockSold, key="order_id",
    description="Stock held, released or sold for an order.",
)  # fmt: skip

CATALOG = [
    ("Kettle", 3900), ("Teapot", 2450), ("Mug", 890), ("Grinder", 5900), ("Scale", 2990),
    ("Filter", 450), ("Dripper", 1900), ("Beans 1kg", 2600), ("Tin", 1200), ("Spoon", 350),
]  # fmt: skip


class Inventory:
    """The inventory domain: every stock change drops cached reads and is announced."""

    def __init__(self) -> None:
        self.memory = MemoryInventoryStore()
        self.redis: RedisInventoryStore | None = None
        self.postgres = PostgresInventoryStore(svc) if config.database_url else None

    @property
    def store(self) -> InventoryStore:
        """PostgreSQL with SHOP_DATABASE_URL; else Redis when the service has one (so any
        process sees the same stock), else memory."""
        if self.postgres is not None:
            return self.postgres
        if not svc.uses_redis:
            return self.memory
        if self.redis is None:
            self.redis = RedisInventoryStore(svc.redis, config.key_prefix)
        return self.redis

    async def reserve(
        self, order_id: str, items: Sequence[Item], tx: Transaction | None = None
    ) -> Reservation:
        """Hold every line for ``order_id`` or none (REJECTED, with the reason); idempotent.
        On PostgreSQL the rows are written in ``tx`` (the command handler's transaction)."""
        if self.postgres is not None:
            reservation = await self.postgres.reserve(order_id, items, tx)
        else:
            reservation = await self.store.reserve(order_id, items)
        if reservation.state == "RESERVED":
            wanted = merge(items)
            await self._changed(wanted, tx)
            lines = [Item(sku=s, quantity=q) for s, q in wanted.items()]
            await self._announce(StockReserved(order_id=order_id, items=lines), "reserved")
        return reservation

    async def release(self, order_id: str, tx: Transaction | None = None) -> Reservation:
        """Return held stock to available; idempotent, and refuses a later reservation."""
        if self.postgres is not None:
            reservation, moved = await self.postgres.release(order_id, tx)
        else:
            reservation, moved = await self.store.release(order_id)
        if reservation.state == "RELEASED" and reservation.reason is None:
            await self._changed(moved, tx)
            await self._announce(StockReleased(order_id=order_id), "released")
        return reservation

    async def sell(self, order_id: str, tx: Transaction | None = None) -> Reservation:
        """Turn held stock into a sale; idempotent."""
        if self.postgres is not None:
            reservation, moved = await self.postgres.sell(order_id, tx)
        else:
            reservation, moved = await self.store.sell(order_id)
        if reservation.state == "SOLD":
            await self._changed(moved, tx)
            await self._announce(StockSold(order_id=order_id), "sold")
        return reservation

    async def put(self, sku: str, update: ProductUpdate) -> Product:
        """Create a product, or set its name, price and available stock."""
        product = await self.store.put(sku, update.name, update.price, update.available)
        await self._changed([sku])
        return product

    async def seed(self, count: int, stock: int) -> None:
        """Add ``count`` demo products that do not exist yet (a restart keeps stock)."""
        for n in range(count):
            name, price = CATALOG[n % len(CATALOG)]
            product = Product(sku=f"SKU-{n + 1:03d}", name=name, price=price, available=stock,
                              reserved=0)  # fmt: skip
            await self.store.add_if_missing(product)
        await svc.cache.invalidate_tags("stock")

    async def _changed(self, skus: Iterable[str], tx: Transaction | None = None) -> None:
        # the cached reads of these products and the list; one round trip, where dropping
        # the "stock" tag would read its index first and drop every product's entry
        keys = [*(load_product.key_for({"sku": sku}) for sku in skus), load_products.key_for({})]

        async def drop() -> None:
            await svc.cache.delete(keys)

        if tx is None:
            await drop()
        else:  # dropped before the commit, a read in between would cache the old stock again
            await tx.after_commit(drop)

    async def _announce(self, event: StockReserved | StockReleased | StockSold, what: str) -> None:
        # A retried call announces again with the same message id: consumers skip the copy.
        await stock_events.publish(event, message_id=f"{event.order_id}:{what}")


stock = Inventory()


@svc.cached(ttl=30, key="product:{sku}", tags=["stock"])
async def load_product(sku: str) -> Product | None:
    """One product, cached until the next stock change."""
    return await stock.store.get(sku)


@svc.cached(ttl=30, key="products", tags=["stock"])
async def load_products() -> list[Product]:
    """Every product, cached until the next stock change."""
    return await stock.store.all()


@svc.on_startup
async def seed() -> None:
    """Add the demo catalog (products that exist keep their stock)."""
    if stock.postgres is not None:
        await stock.postgres.create_tables()
    await stock.seed(config.seed_products, config.seed_stock)


@svc.on_shutdown
async def forget_client() -> None:
    """The service closes its Redis client on shutdown; a restart gets a new one."""
    stock.redis = None


@svc.get("/inventory/products")
async def list_products() -> list[Product]:
    """Every product with its stock."""
    return await load_products()


@svc.get("/inventory/products/{sku}")
async def get_product(sku: str) -> Product:
    """One product with its stock."""
    product = await load_product(sku)
    if product is None:
        raise nativekit.HTTPError(404, f"no product {sku!r}")
    return product


@svc.put("/inventory/products/{sku}")
async def put_product(sku: str, body: ProductUpdate) -> Product:
    """Create or restock a product."""
    return await stock.put(sku, body)


@svc.command_handler(config.topic("inventory.commands"))
async def on_reserve(cmd: ReserveStock, tx: Transaction) -> Reservation:
    """Hold stock for an order (idempotent by order id); refuse when there is not enough.
    On PostgreSQL the reservation commits with the stored reply (``tx``)."""
    reservation = await stock.reserve(cmd.order_id, cmd.items, _db(tx))
    if reservation.state != "RESERVED":
        raise nativekit.CommandRejected(reservation.reason or f"reservation {reservation.state}")
    return reservation


@svc.command_handler(config.topic("inventory.commands"))
async def on_release(cmd: ReleaseStock, tx: Transaction) -> Reservation:
    """Give held stock back (idempotent; never refused, so compensation always ends)."""
    return await stock.release(cmd.order_id, _db(tx))


# The orders topic also carries OrderPlaced and OrderCancelled: skipped unclaimed.
@svc.consumer(config.topic("orders"), concurrency=8, event_types=[OrderConfirmed])
async def on_order_confirmed(event: OrderConfirmed, tx: Transaction) -> None:
    """A confirmed order's reservation becomes a sale (once per message id; on PostgreSQL
    the sale commits with the message's DONE mark)."""
    await stock.sell(event.order_id, _db(tx))


def _db(tx: Transaction) -> Transaction | None:
    """The handler's transaction where inventory keeps stock in PostgreSQL."""
    return tx if stock.postgres is not None else None


app = svc.app
# The process serves this service under load: fewer collector passes, and what
# importing built is frozen out of them (docs/performance.md).
nativekit.tune_gc()
