"""Fixtures for cache tests: backends on memory and on the real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from nativekit.backends.redis import RedisCache
from nativekit.cache import Cache, CacheBackend, MemoryCache


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A raw client on the test Redis (to inspect what the cache wrote)."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def cache(request: pytest.FixtureRequest, unique: str) -> AsyncIterator[Cache]:
    """A Cache on each backend, with a unique prefix."""
    backend: CacheBackend
    if request.param == "memory":
        backend = MemoryCache()
    else:
        url = request.getfixturevalue("redis_url")
        backend = RedisCache(aioredis.Redis.from_url(url), owns_client=True)
    cache = Cache(backend, prefix=f"t{unique}")
    yield cache
    await cache.stop()


Poll = Callable[..., Awaitable[None]]


async def _eventually(
    condition: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 3.0,  # noqa: ASYNC109
    every: float = 0.01,
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


@pytest.fixture
def eventually() -> Poll:
    """Poll an async condition until true, failing after a timeout (default 3 s)."""
    return _eventually
