"""Stopping a cache ends its computations before it closes the backend."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from nativekit.backends.redis import RedisCache
from nativekit.cache import Cache

pytestmark = pytest.mark.redis


async def _connections_named(client: aioredis.Redis, name: str) -> int:
    clients = await client.client_list()
    return sum(1 for c in clients if c.get("name") == name)


async def test_stop_during_an_early_refresh_leaves_no_connection_open(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    """A refresh still computing when the cache stops is cancelled: it does not write to
    the closed client afterwards, which would open a connection nothing closes."""
    name = f"nk-stop-{uuid.uuid4().hex[:8]}"
    cache = Cache(
        RedisCache(aioredis.Redis.from_url(redis_url, client_name=name), owns_client=True),
        prefix=f"t{name}",
    )
    refreshing = asyncio.Event()
    finished: list[int] = []
    calls = 0

    @cache.cached(ttl=60, key="k", early_refresh=1e9)
    async def get() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)  # the measured compute time drives early refresh
        if calls > 1:
            refreshing.set()
            await asyncio.sleep(0.3)
        finished.append(calls)
        return calls

    assert await get() == 1
    assert await get() == 1  # served stale; the refresh starts in the background
    await asyncio.wait_for(refreshing.wait(), 5)
    assert await _connections_named(redis_client, name) >= 1
    await cache.stop()
    await asyncio.sleep(0.5)  # past the refresh's compute time
    assert finished == [1]
    assert await _connections_named(redis_client, name) == 0
