"""Changing NATIVEKIT_SAGA_SHARDS on existing data: ``nativekit sagas reshard`` moves every
saga (record, indexes, leases, live counts, outbox entries) so a store with the new count
sees exactly what the old one saw; on one Redis and on a Redis Cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import nativekit
from nativekit.backends.redis import RedisSagaStore, create_redis
from nativekit.saga import SagaRecord, SagaStatus
from nativekit.saga._store.model import Transition
from nativekit.saga._store.outbox import OutboxEntry
from tests.cli.conftest import Cli

pytestmark = pytest.mark.redis
N = 40


@pytest.fixture(params=["single", "cluster"])
async def redis(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[tuple[str, Any]]:
    """(URL, client) of the test Redis, then of the test Redis Cluster; keys removed after."""
    if request.param == "cluster":
        url = str(request.getfixturevalue("redis_cluster").url)
        client: Any = create_redis(nativekit.Settings(_env_file=None, redis={"url": url}))
    else:
        url = str(request.getfixturevalue("redis_url"))
        client = aioredis.Redis.from_url(url)
    yield url, client
    async for key in client.scan_iter(match=f"*{unique}*", count=500):
        await client.delete(key)
    await client.aclose()


def record(saga_id: str, name: str) -> SagaRecord:
    """A fresh RUNNING record."""
    now = time.time()
    return SagaRecord(saga_id=saga_id, name=name, definition="d1", status=SagaStatus.RUNNING,
                      input="{}", created_at=now, updated_at=now)  # fmt: skip


async def populate(store: RedisSagaStore) -> None:
    """N sagas: running (some with expired leases), compensating, completed, with outbox."""
    common = {"definition": "d1", "lease": 30, "retention": 600}
    for i in range(N):
        name = "ship" if i % 2 else "undo"
        saga = record(f"s{i}", name)
        await store.create(saga, token="t", lease=0.05 if i % 5 == 0 else 30)
        if i % 3 == 1:
            done = Transition(status=SagaStatus.COMPLETED, fields={"x": str(i)})
            await store.write(f"s{i}", "t", done, current=SagaStatus.RUNNING, name=name, **common)
        elif i % 3 == 2 and i % 5:
            entry = OutboxEntry(f"e{i}", "orders.events", f"s{i}", "{}", "Compensating").encode()
            change = Transition(status=SagaStatus.COMPENSATING, outbox=[entry])
            await store.write(f"s{i}", "t", change, current=SagaStatus.RUNNING, name=name, **common)


async def snapshot(store: RedisSagaStore) -> dict[str, Any]:
    """What operators and the runtime read from the store."""
    records = {f"s{i}": await store.get(f"s{i}") for i in range(N)}
    listed = {}
    for status in SagaStatus:
        page = await store.list(status=status, limit=1000)
        listed[status.value] = sorted(r.saga_id for r in page.items)
    return {
        "records": {k: v.to_fields() if v else None for k, v in records.items()},
        "listed": listed,
        "live": [await store.live_definitions(n) for n in ("ship", "undo")],
        "backlog": await store.backlog(),
    }


async def test_reshard_moves_every_saga_and_outbox_entry(
    redis: tuple[str, Any], unique: str, tmp_path: Path
) -> None:
    """4 -> 7 -> 3 shards: each new store sees the same records, listings, live counts and
    lease backlog, recovers the expired sagas and relays every pending outbox entry."""
    url, client = redis
    prefix = f"test:reshard:{unique}"
    before_store = RedisSagaStore(client, prefix=prefix, shards=4)
    await populate(before_store)
    await asyncio.sleep(0.1)  # the short leases expire
    before = await snapshot(before_store)
    expired = sorted(f"s{i}" for i in range(0, N, 5) if i % 3 != 1)  # still RUNNING
    assert before["backlog"] == len(expired)
    env = {"NATIVEKIT_ENVIRONMENT": "test", "NATIVEKIT_REDIS_URL": url}
    env |= {"NATIVEKIT_SAGA_KEY_PREFIX": prefix, "NATIVEKIT_SAGA_SHARDS": "4"}
    cli = Cli(env, tmp_path)

    refused = await cli("sagas", "reshard", "--to", "7")
    assert refused.code == 2 and "--services-stopped" in refused.err

    for old, new in ((4, 7), (7, 3)):
        ran = await cli("sagas", "reshard", "--from", str(old), "--to", str(new),
                        "--services-stopped", "--json")  # fmt: skip
        assert ran.code == 0, ran.err
        report = ran.json()
        assert report["records"] == N and report["moved"] > 0
        store = RedisSagaStore(client, prefix=prefix, shards=new)
        assert await snapshot(store) == before
    outbox = store.outbox(consumer="relay", claim_after=30)
    await outbox.start()
    batch = await outbox.read(100)
    expected = {f"e{i}" for i in range(N) if i % 3 == 2 and i % 5}
    assert {e.id for e in batch.entries} == expected
    claimed = await store.claim_expired(["ship:d1", "undo:d1"], lambda: "n", lease=30, limit=20)
    assert sorted(r.saga_id for r in claimed) == expired
