"""A service on Redis Cluster: only NATIVEKIT_REDIS_URL changes.

NATIVEKIT_REDIS_URL=redis+cluster://10.0.0.1:6379,10.0.0.2:6379 uvicorn app:app
"""

from __future__ import annotations

from pydantic import BaseModel

import nativekit
from nativekit.saga import SagaContext


class Refill(BaseModel):
    sku: str
    quantity: int


def build(redis_url: str) -> nativekit.Service:
    """The service, on the Redis (or Redis Cluster) that ``redis_url`` names."""
    settings = nativekit.Settings(redis={"url": redis_url}, saga={"shards": 16})
    svc = nativekit.Service("stock", settings=settings)
    refill = svc.saga("refill", input=Refill)

    @refill.step()
    async def order_from_supplier(ctx: SagaContext[Refill]) -> str:
        return f"po-{ctx.data.sku}"  # the saga's keys sit on one of 16 shards of the cluster

    @svc.cached(ttl=30, key="level:{sku}", tags=["levels"])
    async def stock_level(sku: str) -> int:
        return 7  # cache entries and tag indexes spread over the cluster's masters

    @svc.post("/refills", status_code=202)
    async def start_refill(body: Refill) -> dict[str, str]:
        handle = await svc.sagas.start(refill, body, saga_id=f"refill-{body.sku}")
        record = await handle.wait(5)
        return {"status": record.status.value, "level": str(await stock_level(body.sku))}

    return svc
