"""The near cache: served from memory, coherent across replicas through Redis pub/sub."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from nativekit import Settings
from nativekit.backends import Backends
from nativekit.backends.redis import RedisCache
from nativekit.cache import Cache, NearCache
from nativekit.errors import ConfigError

REPLICA = Path(__file__).with_name("near_replica.py")
sys.path.insert(0, str(REPLICA.parent))
from near_replica import price_function, replica_cache  # noqa: E402

pytestmark = pytest.mark.redis


class Replica:
    """The subprocess replica, driven line by line."""

    def __init__(self, url: str, prefix: str, truth: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPLICA), url, prefix, str(truth)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    async def line(self) -> str:
        """The next output line (at most 15 s)."""
        assert self.proc.stdout is not None
        return await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 15)

    async def get(self) -> dict[str, Any]:
        """Ask the replica to call the cached function."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("get\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(await self.line())
        return answer

    def close(self) -> None:
        """Stop the replica (quit, then kill if it hangs)."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture(params=["single", "cluster"])
def any_redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of the test Redis, then of the test Redis Cluster (sharded pub/sub)."""
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return str(request.getfixturevalue("redis_url"))


@pytest.mark.slow
async def test_write_in_one_replica_invalidates_the_other(
    any_redis_url: str, unique: str, tmp_path: Path
) -> None:
    """A replica's near-cached value is dropped within a bounded delay of another's write."""
    redis_url = any_redis_url
    truth = tmp_path / "price"
    truth.write_text("100")
    prefix = f"near{unique}"
    replica = Replica(redis_url, prefix, truth)
    cache = replica_cache(redis_url, prefix)
    price = price_function(cache, truth)
    try:
        await cache.start()
        await asyncio.wait_for(cache.near_ready(), 10)
        assert await replica.line() == "ready\n"
        assert (await replica.get()) == {"price": 100, "near_hits": 0}
        assert (await replica.get()) == {"price": 100, "near_hits": 1}  # from its memory

        truth.write_text("200")  # the write ...
        assert await price.invalidate(sku="a") is True  # ... and its invalidation
        written = time.monotonic()
        while (answer := await replica.get())["price"] != 200:
            assert time.monotonic() - written < 1.0, "replica still serves the old value"
        delay = time.monotonic() - written
        assert delay < 1.0

        assert await price("a") == 200
        truth.write_text("300")
        assert await cache.invalidate_tags("prices") == 1
        written = time.monotonic()
        while (answer := await replica.get())["price"] != 300:
            assert time.monotonic() - written < 1.0, "tag invalidation did not reach the replica"
        assert answer["near_hits"] >= 1
    finally:
        replica.close()
        await cache.stop()


async def test_near_hits_skip_redis(redis_url: str, unique: str) -> None:
    """Once near-cached, a value is served without reading Redis."""
    backend = RedisCache(
        aioredis.Redis.from_url(redis_url), channel=f"{unique}:inv", owns_client=True
    )
    cache = Cache(backend, prefix=unique, near=NearCache(max_entries=10, max_age=60))
    await cache.start()
    await asyncio.wait_for(cache.near_ready(), 5)
    reads = 0
    real_get = backend.get

    async def counting_get(key: str) -> bytes | None:
        nonlocal reads
        reads += 1
        return await real_get(key)

    backend.get = counting_get  # type: ignore[method-assign]

    @cache.cached(ttl=60, key="k:{n}")
    async def get(n: int) -> int:
        return n

    for _ in range(5):
        assert await get(1) == 1
    assert reads == 1
    assert cache.stats.get(get.stats.name).near_hits == 4
    await cache.stop()
    assert cache.near is not None and not cache.near.active and len(cache.near) == 0


def test_near_cache_is_bounded_and_expires() -> None:
    """The near cache keeps max_entries and never past max_age or the entry's expiry."""
    near = NearCache(max_entries=2, max_age=60)
    near.active = True
    far = time.time() + 60
    for key in "abc":
        near.put(key, key, expires_at=far, epoch=near.epoch)
    assert len(near) == 2 and near.get("a") is not near.get("b")
    near.put("old", 1, expires_at=time.time() - 1, epoch=near.epoch)
    assert near.get("old") is not 1  # noqa: F632 - MISSING sentinel, not the value
    stale_epoch = near.epoch
    near.discard(["b"])
    near.put("d", "d", expires_at=far, epoch=stale_epoch)
    assert near.get("d") is not "d"  # noqa: F632 - a read older than an invalidation


def test_near_cache_needs_a_channel() -> None:
    """A near cache without an invalidation channel is a configuration error."""
    with pytest.raises(ConfigError, match="channel"):
        Cache(near=NearCache(max_entries=1, max_age=1))


def test_settings_turn_the_near_cache_on(redis_url: str) -> None:
    """NATIVEKIT_CACHE_NEAR_ENABLED builds a RedisCache with a channel and a near cache."""
    cache = Backends(
        "s", Settings(redis={"url": redis_url}, cache={"near_enabled": True, "near_size": 5})
    ).cache()
    assert isinstance(cache.backend, RedisCache)
    assert cache.backend.channel == "nkc:s:invalidated"
    assert cache.near is not None and cache.near.max_entries == 5
    memory = Backends("s", Settings(cache={"near_enabled": True})).cache()
    assert memory.near is None


@pytest.mark.slow
async def test_lost_subscription_switches_the_near_cache_off(
    monkeypatch: pytest.MonkeyPatch, eventually: Any
) -> None:
    """When Redis goes away the near cache is flushed and off; calls still succeed."""
    from nativekit.testing import servers as test_servers

    monkeypatch.delenv(test_servers.REDIS_ENV, raising=False)  # never the shared server
    server = test_servers.start_redis(reuse=False)
    assert server.process is not None
    cache = Backends(
        "near-outage",
        Settings(redis={"url": server.url}, cache={"near_enabled": True, "timeout_seconds": 0.2}),
    ).cache()
    try:
        await cache.start()
        await asyncio.wait_for(cache.near_ready(), 5)

        @cache.cached(ttl=60, key="k:{n}")
        async def get(n: int) -> int:
            return n

        await get(1)
        assert cache.near is not None and len(cache.near) == 1
        server.stop()

        async def off() -> bool:
            return cache.near is not None and not cache.near.active

        await eventually(off, timeout=10)
        assert len(cache.near) == 0
        assert await get(1) == 1
        assert cache.stats.get(get.stats.name).near_hits == 0
    finally:
        server.stop()
        await cache.stop()
