"""Cache settings are documented and select the backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nativekit import Service, Settings
from nativekit.backends.redis import RedisCache, create_redis
from nativekit.cache import MemoryCache
from nativekit.settings import variables
from nativekit.testing import serve

DOCS = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_every_cache_setting_is_documented() -> None:
    """Each cache setting appears in docs/configuration.md as its variable."""
    text = DOCS.read_text()
    names = [name for name in variables() if name.startswith("NATIVEKIT_CACHE_")]
    assert names
    missing = [name for name in names if f"`{name}`" not in text]
    assert missing == []


def test_memory_url_selects_the_memory_cache() -> None:
    """With NATIVEKIT_REDIS_URL=memory:// the service caches in process memory."""
    svc = Service("s", settings=Settings(cache={"memory_max_entries": 7}))
    assert isinstance(svc.cache.backend, MemoryCache)
    assert svc.cache.backend.max_entries == 7
    assert svc.cache is svc.cache
    assert svc.cache.prefix == "nkc:s"


@pytest.mark.redis
async def test_a_cache_first_used_after_startup_is_closed_at_shutdown(redis_url: str) -> None:
    """``svc.cache`` used for the first time while the service runs (from a route, say)
    still closes its Redis connections when the service shuts down."""
    svc = Service("late-cache", settings=Settings(_env_file=None, redis={"url": redis_url}))
    admin = create_redis(Settings(_env_file=None, redis={"url": redis_url}))
    async with serve(svc):
        await svc.cache.delete(["late-cache:k"])
        backend = svc.cache.backend
        assert isinstance(backend, RedisCache)
        connection = str(await backend.client.client_id())
    try:
        deadline = asyncio.get_running_loop().time() + 2
        while connection in {c["id"] for c in await admin.client_list()}:
            assert asyncio.get_running_loop().time() < deadline, "connection still open"
            await asyncio.sleep(0.02)
    finally:
        await backend.aclose()
        await admin.aclose()
