"""Sell a reservation in a transaction, read the product before the commit (as a GET would)
and again after it; print both reads' ``reserved`` as JSON.

python tests/shop/inventory_cache_worker.py   (SHOP_DATABASE_URL set: inventory on PostgreSQL)
"""

from __future__ import annotations

import asyncio
import json
import uuid

from examples.shop import inventory
from examples.shop.models import Item, ProductUpdate
from nativekit.testing import lifespan


async def main() -> None:
    """One sale with a read of the product between its handler and its commit."""
    sku, order_id = f"race-{uuid.uuid4().hex[:8]}", f"ord_{uuid.uuid4().hex[:8]}"
    async with lifespan(inventory.app):
        await inventory.stock.put(sku, ProductUpdate(name="race", price=100, available=3))
        await inventory.stock.reserve(order_id, [Item(sku=sku, quantity=1)])
        async with inventory.svc.transaction() as tx:  # a consumer handler's, as on_order_confirmed
            await inventory.stock.sell(order_id, tx)
            during = await inventory.load_product(sku)  # a GET between the sale and its commit
        after = await inventory.load_product(sku)
    assert during is not None and after is not None
    print(json.dumps({"during": during.reserved, "after": after.reserved}))


if __name__ == "__main__":
    asyncio.run(main())
