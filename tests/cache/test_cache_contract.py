"""The CacheBackend contract, run against MemoryCache and RedisCache (real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from nativekit.backends.redis import RedisCache
from nativekit.cache import CacheBackend, MemoryCache


class CacheBackendContract:
    """Behaviour every backend must show."""

    async def test_missing_key_reads_none(self, backend: CacheBackend, unique: str) -> None:
        """Reading a key never written gives None."""
        assert await backend.get(f"{unique}:nothing") is None

    async def test_set_then_get_returns_the_bytes(self, backend: CacheBackend, unique: str) -> None:
        """A stored value reads back byte for byte."""
        await backend.set(f"{unique}:a", b"v\x00\xff", ttl=10)
        assert await backend.get(f"{unique}:a") == b"v\x00\xff"

    async def test_set_overwrites(self, backend: CacheBackend, unique: str) -> None:
        """Setting a key again replaces its value."""
        await backend.set(f"{unique}:a", b"1", ttl=10)
        await backend.set(f"{unique}:a", b"2", ttl=10)
        assert await backend.get(f"{unique}:a") == b"2"

    async def test_entry_expires_after_ttl(
        self, backend: CacheBackend, unique: str, eventually: Any
    ) -> None:
        """An entry is gone once its TTL passed."""
        await backend.set(f"{unique}:a", b"1", ttl=0.05)

        async def gone() -> bool:
            return await backend.get(f"{unique}:a") is None

        await eventually(gone)

    async def test_delete_removes_and_counts(self, backend: CacheBackend, unique: str) -> None:
        """delete removes the given keys and counts those that existed."""
        await backend.set(f"{unique}:a", b"1", ttl=10)
        await backend.set(f"{unique}:b", b"2", ttl=10)
        assert await backend.delete([f"{unique}:a", f"{unique}:c"]) == 1
        assert await backend.get(f"{unique}:a") is None
        assert await backend.get(f"{unique}:b") == b"2"
        assert await backend.delete([]) == 0

    async def test_invalidate_tags_removes_only_tagged(
        self, backend: CacheBackend, unique: str
    ) -> None:
        """Invalidating a tag removes its entries, returns their keys, keeps the others."""
        t1, t2 = f"{unique}:tag:1", f"{unique}:tag:2"
        await backend.set(f"{unique}:a", b"1", ttl=10, tags=[t1])
        await backend.set(f"{unique}:b", b"2", ttl=10, tags=[t1, t2])
        await backend.set(f"{unique}:c", b"3", ttl=10, tags=[t2])
        await backend.set(f"{unique}:d", b"4", ttl=10)
        assert await backend.invalidate_tags([t1]) == [f"{unique}:a", f"{unique}:b"]
        assert await backend.get(f"{unique}:a") is None
        assert await backend.get(f"{unique}:b") is None
        assert await backend.get(f"{unique}:c") == b"3"
        assert await backend.get(f"{unique}:d") == b"4"
        assert await backend.invalidate_tags([t2]) == [f"{unique}:c"]
        assert await backend.invalidate_tags([t1, t2]) == []
        assert await backend.invalidate_tags([]) == []

    async def test_tag_index_forgets_expired_entries(
        self, backend: CacheBackend, unique: str, eventually: Any
    ) -> None:
        """An expired entry leaves its tag index: invalidation only reports live keys."""
        tag = f"{unique}:tag"
        await backend.set(f"{unique}:old", b"1", ttl=0.05, tags=[tag])

        async def expired() -> bool:
            return await backend.get(f"{unique}:old") is None

        await eventually(expired)
        await backend.set(f"{unique}:new", b"2", ttl=10, tags=[tag])
        assert await backend.invalidate_tags([tag]) == [f"{unique}:new"]

    async def test_lease_is_exclusive_until_released(
        self, backend: CacheBackend, unique: str
    ) -> None:
        """A held lease cannot be taken; a wrong token cannot release it; the holder can."""
        key = f"{unique}:lease"
        token = await backend.acquire(key, lease=10)
        assert token
        assert await backend.acquire(key, lease=10) is None
        await backend.release(key, "not-the-token")
        assert await backend.acquire(key, lease=10) is None
        await backend.release(key, token)
        assert await backend.acquire(key, lease=10)

    async def test_lease_expires(self, backend: CacheBackend, unique: str, eventually: Any) -> None:
        """A lease that is never released frees itself after its duration."""
        key = f"{unique}:lease"
        assert await backend.acquire(key, lease=0.05)

        async def free() -> bool:
            return await backend.acquire(key, lease=10) is not None

        await eventually(free)

    async def test_ping_answers(self, backend: CacheBackend) -> None:
        """A reachable backend answers ping."""
        await backend.ping()


class TestMemoryCache(CacheBackendContract):
    """MemoryCache passes the contract and stays bounded."""

    @pytest.fixture
    async def backend(self) -> AsyncIterator[MemoryCache]:
        """A fresh MemoryCache."""
        cache = MemoryCache(max_entries=100)
        yield cache
        await cache.aclose()

    async def test_least_recently_used_entry_is_evicted(self) -> None:
        """Past max_entries the least recently read entry goes first, with its tags."""
        cache = MemoryCache(max_entries=2)
        await cache.set("a", b"1", ttl=10, tags=["t"])
        await cache.set("b", b"2", ttl=10)
        assert await cache.get("a") == b"1"  # a is now more recent than b
        await cache.set("c", b"3", ttl=10)
        assert await cache.get("b") is None
        assert await cache.get("a") == b"1"
        assert await cache.get("c") == b"3"  # now a is the least recent
        await cache.set("d", b"4", ttl=10)
        assert len(cache) == 2
        assert await cache.get("a") is None
        assert cache.tag_index_size("t") == 0

    async def test_tag_index_is_empty_once_entries_expire(self, eventually: Any) -> None:
        """The index of a tag holds no keys once its entries expired."""
        cache = MemoryCache()
        await cache.set("a", b"1", ttl=0.01, tags=["t"])
        assert cache.tag_index_size("t") == 1

        async def empty() -> bool:
            return cache.tag_index_size("t") == 0

        await eventually(empty)


@pytest.mark.redis
class TestRedisCache(CacheBackendContract):
    """RedisCache passes the contract on a real Redis; tag indexes expire."""

    @pytest.fixture
    async def backend(self, redis_url: str) -> AsyncIterator[RedisCache]:
        """A RedisCache with its own client."""
        cache = RedisCache(aioredis.Redis.from_url(redis_url), owns_client=True)
        yield cache
        await cache.aclose()

    async def test_tag_index_expires_with_its_entries(
        self, backend: RedisCache, redis_client: aioredis.Redis, unique: str, eventually: Any
    ) -> None:
        """A tag's sorted set lives no longer than its longest-lived entry."""
        tag = f"{unique}:tag"
        await backend.set(f"{unique}:a", b"1", ttl=0.2, tags=[tag])
        await backend.set(f"{unique}:b", b"1", ttl=0.3, tags=[tag])
        ttl_ms = await redis_client.pttl(tag)
        assert 200 < ttl_ms <= 300

        async def gone() -> bool:
            return not await redis_client.exists(tag)

        await eventually(gone)

    async def test_unreachable_server_raises_backend_unavailable(self) -> None:
        """Driver errors leave the backend as BackendUnavailable naming the server."""
        from nativekit.errors import BackendUnavailable
        from nativekit.testing.servers import free_port

        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        backend = RedisCache(client, owns_client=True, where="Redis at test")
        for call in (
            backend.get("k"),
            backend.set("k", b"v", ttl=1),
            backend.set("k", b"v", ttl=1, tags=["t"]),
            backend.delete(["k"]),
            backend.invalidate_tags(["t"]),
            backend.acquire("k", lease=1),
            backend.release("k", "x"),
            backend.ping(),
        ):
            with pytest.raises(BackendUnavailable, match="Redis at test"):
                await call
        await backend.aclose()


@pytest.mark.redis
class TestClusterCache(CacheBackendContract):
    """RedisCache passes the contract on a real 3-master Redis Cluster (keys and tags of a
    call on different nodes)."""

    @pytest.fixture
    async def backend(self, cluster_client: Any) -> AsyncIterator[RedisCache]:
        """A RedisCache on the cluster client."""
        yield RedisCache(cluster_client)
