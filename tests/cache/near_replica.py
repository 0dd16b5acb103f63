"""A second replica for the near-cache coherence test (run as a subprocess).

Usage: python near_replica.py REDIS_URL PREFIX TRUTH_FILE. Reads commands from
stdin, one per line: ``get`` answers a JSON line ``{"price": ..., "near_hits": ...}``;
``quit`` exits. Prints ``ready`` once its near cache is subscribed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import redis.asyncio as aioredis

from nativekit import Settings
from nativekit.backends.redis import RedisCache, create_redis
from nativekit.cache import Cache, NearCache


def replica_cache(url: str, prefix: str) -> Cache:
    """The cache both replicas build: Redis plus a near cache with a long max age."""
    client = (
        create_redis(Settings(_env_file=None, redis={"url": url}))
        if "+cluster://" in url  # sharded pub/sub
        else aioredis.Redis.from_url(url)
    )
    backend = RedisCache(client, channel=f"{prefix}:inv", owns_client=True)
    return Cache(backend, prefix=prefix, near=NearCache(max_entries=100, max_age=60))


def price_function(cache: Cache, truth: Path):  # type: ignore[no-untyped-def]
    """The cached function: reads the 'database' (a file)."""

    @cache.cached(ttl=60, key="price:{sku}", tags=["prices"])
    async def price(sku: str) -> int:
        return int(truth.read_text())  # noqa: ASYNC240 - a tiny file stands in for a database

    return price


async def main(url: str, prefix: str, truth: Path) -> None:
    cache = replica_cache(url, prefix)
    price = price_function(cache, truth)
    await cache.start()
    await asyncio.wait_for(cache.near_ready(), 10)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line in ("", "quit"):
            break
        value = await price("a")
        hits = cache.stats.get(price.stats.name).near_hits
        print(json.dumps({"price": value, "near_hits": hits}), flush=True)
    await cache.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
