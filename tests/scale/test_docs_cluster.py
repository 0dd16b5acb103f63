"""The docs' Redis Cluster example runs on a real cluster: a saga, a cached read and the
listing operators use (which reads every shard, on every master)."""

from __future__ import annotations

import uuid

import pytest

from docs.examples.redis_cluster import build
from nativekit.saga import SagaStatus
from nativekit.testing import serve, servers

pytestmark = pytest.mark.redis


async def test_the_example_runs_on_a_cluster(redis_cluster: servers.RedisClusterServer) -> None:
    """POST /refills completes its saga on the cluster; the paged listing finds them all."""
    svc = build(redis_cluster.url)
    skus = [f"sku-{uuid.uuid4().hex[:8]}" for _ in range(6)]
    async with serve(svc) as client:
        for sku in skus:
            reply = await client.post("/refills", json={"sku": sku, "quantity": 3})
            assert reply.status_code == 202, reply.text
            assert reply.json() == {"status": "COMPLETED", "level": "7"}
        listed: set[str] = set()
        cursor = None
        while True:  # pages of 2 across the 16 shards on all masters (what operators list)
            page = await svc.sagas.list(
                name="refill", status=SagaStatus.COMPLETED, limit=2, cursor=cursor
            )
            listed |= {record.saga_id for record in page.items}
            cursor = page.cursor
            if not cursor:
                break
    assert {f"refill-{sku}" for sku in skus} <= listed
