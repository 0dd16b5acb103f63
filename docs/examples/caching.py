"""A product catalog that caches lookups and invalidates them on writes."""

from __future__ import annotations

from pydantic import BaseModel

import nativekit


class Product(BaseModel):
    """What the catalog returns."""

    sku: str
    name: str
    price: float


# Stands in for a database.
DATABASE: dict[str, Product] = {"p-1": Product(sku="p-1", name="Kettle", price=39.0)}
LOADS: list[str] = []

svc = nativekit.Service("catalog")


@svc.cached(ttl=300, key="product:{sku}", tags=["products"], none_ttl=30)
async def load_product(sku: str) -> Product | None:
    """Read a product; a missing one is remembered (as None) for 30 s."""
    LOADS.append(sku)
    return DATABASE.get(sku)


@svc.get("/products/{sku}")
async def get_product(sku: str) -> Product:
    """Serve a product, from the cache when possible."""
    product = await load_product(sku)
    if product is None:
        raise nativekit.HTTPError(404, f"no product {sku!r}")
    return product


@svc.put("/products/{sku}")
async def put_product(sku: str, body: Product) -> Product:
    """Write a product, then drop its cache entry so every replica reads the new one."""
    DATABASE[sku] = body
    await load_product.invalidate(sku=sku)
    return body


@svc.post("/products/reprice")
async def reprice(percent: float) -> dict[str, int]:
    """Change every price and drop every cached product at once (a tag)."""
    for sku, product in DATABASE.items():
        DATABASE[sku] = product.model_copy(update={"price": product.price * (1 + percent / 100)})
    dropped = await svc.cache.invalidate_tags("products")
    return {"dropped": dropped}


app = svc.app
