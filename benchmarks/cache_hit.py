"""Cache hit throughput and miss cost: raw redis-py vs cashews vs aiocache vs nativekit.

Every contender reads the same small value from the same Redis server:

* raw       redis-py asyncio ``GET`` + ``json.loads`` (a model: ``model_validate_json``)
* cashews   ``@cache(ttl=..., key=...)``
* aiocache  ``@cached(cache=RedisCache, serializer=JsonSerializer/PickleSerializer)``
* nativekit ``@cache.cached`` on ``RedisCache``, and with the near cache in front

Hits: sequential awaits of one hot key (ops/s, median of interleaved rounds
whose order rotates; the ratio to raw is the median of per-round ratios).
Misses: a fresh key per call (mean microseconds per call, GET + SET; median of
interleaved rounds, ratio to raw per round).
Every figure is also given as a ratio to raw measured in the same run. The
last line of output is one JSON object.

    python benchmarks/cache_hit.py [--redis redis://127.0.0.1:6379/0] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import harness
import redis.asyncio as aioredis
from pydantic import BaseModel

from nativekit.backends.redis import RedisCache
from nativekit.cache import Cache, NearCache

Call = Callable[[str], Awaitable[Any]]
VALUE = {"sku": "sku-1", "name": "Widget", "price": 9.99, "tags": ["a", "b"], "stock": 12}


class Product(BaseModel):
    """The model variant of VALUE."""

    sku: str
    name: str
    price: float
    tags: list[str]
    stock: int


async def compute_dict(sku: str) -> dict[str, Any]:
    return {**VALUE, "sku": sku}


async def compute_model(sku: str) -> Product:
    return Product(**{**VALUE, "sku": sku})


def raw_contender(client: aioredis.Redis, prefix: str, model: bool) -> Call:
    async def call(sku: str) -> Any:
        key = f"{prefix}:raw:{sku}"
        raw = await client.get(key)
        if raw is not None:
            return Product.model_validate_json(raw) if model else json.loads(raw)
        value = await (compute_model(sku) if model else compute_dict(sku))
        data = value.model_dump_json() if model else json.dumps(value)
        await client.set(key, data, ex=600)
        return value

    return call


def cashews_contender(url: str, prefix: str, model: bool) -> Call:
    from cashews import Cache as CashewsCache

    cache = CashewsCache()
    cache.setup(url)
    func = compute_model if model else compute_dict

    @cache(ttl="10m", key=prefix + ":cashews:{sku}")
    async def call(sku: str) -> Any:
        return await func(sku)

    return call


def aiocache_contender(url: str, prefix: str, model: bool) -> Call:
    from aiocache import cached
    from aiocache.backends.redis import RedisCache as AioRedisCache
    from aiocache.serializers import JsonSerializer, PickleSerializer

    host, _, port = url.split("//")[1].split("/")[0].partition(":")
    func = compute_model if model else compute_dict

    @cached(
        ttl=600,
        cache=AioRedisCache,
        endpoint=host,
        port=int(port or 6379),
        namespace=f"{prefix}:aiocache",
        serializer=PickleSerializer() if model else JsonSerializer(),
    )
    async def call(sku: str) -> Any:
        return await func(sku)

    return call


def nativekit_contender(cache: Cache, model: bool) -> Call:
    if model:

        @cache.cached(ttl=600, key="product:{sku}")
        async def get_model(sku: str) -> Product:
            return await compute_model(sku)

        return get_model

    @cache.cached(ttl=600, key="product:{sku}")
    async def get_dict(sku: str) -> dict[str, Any]:
        return await compute_dict(sku)

    return get_dict


async def hits_per_second(call: Call, n: int) -> float:
    await call("hot")
    started = time.perf_counter()
    for _ in range(n):
        await call("hot")
    return n / (time.perf_counter() - started)


async def miss_micros(call: Call, n: int) -> float:
    skus = [uuid.uuid4().hex for _ in range(n)]
    started = time.perf_counter()
    for sku in skus:
        await call(sku)
    return (time.perf_counter() - started) / n * 1e6


async def run(url: str, quick: bool) -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    raw_client = aioredis.Redis.from_url(url)
    remote = Cache(RedisCache(aioredis.Redis.from_url(url), owns_client=True), prefix=prefix)
    near_backend = RedisCache(
        aioredis.Redis.from_url(url), channel=f"{prefix}:inv", owns_client=True
    )
    near = Cache(near_backend, prefix=f"{prefix}n", near=NearCache(max_entries=1000, max_age=60))
    await near.start()
    await asyncio.wait_for(near.near_ready(), 5)
    rounds, n_hit, n_near = (3, 500, 5000) if quick else (21, 2000, 100_000)
    miss_rounds, n_miss = (2, 100) if quick else (9, 500)
    results: dict[str, Any] = {}
    try:
        for kind in ("dict", "model"):
            model = kind == "model"
            contenders: dict[str, Call] = {
                "raw": raw_contender(raw_client, prefix, model),
                "cashews": cashews_contender(url, f"{prefix}{kind}", model),
                "aiocache": aiocache_contender(url, f"{prefix}{kind}", model),
                "nativekit": nativekit_contender(remote, model),
                "nativekit_near": nativekit_contender(near, model),
            }
            hits: dict[str, list[float]] = {name: [] for name in contenders}
            names = list(contenders)
            for i in range(rounds):
                for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate order
                    count = n_near if name == "nativekit_near" else n_hit
                    hits[name].append(await hits_per_second(contenders[name], count))
            miss_names = [n for n in names if n != "nativekit_near"]
            miss_runs: dict[str, list[float]] = {name: [] for name in miss_names}
            for i in range(miss_rounds):
                for name in miss_names[i % len(miss_names) :] + miss_names[: i % len(miss_names)]:
                    miss_runs[name].append(await miss_micros(contenders[name], n_miss))
            misses = {name: statistics.median(v) for name, v in miss_runs.items()}
            miss_ratios = {
                name: statistics.median(a / b for a, b in zip(v, miss_runs["raw"], strict=True))
                for name, v in miss_runs.items()
            }
            hit_med = {name: statistics.median(v) for name, v in hits.items()}
            # ratio per round (same moment, same machine load), then the median
            ratios = {
                name: statistics.median(a / b for a, b in zip(v, hits["raw"], strict=True))
                for name, v in hits.items()
            }
            results[kind] = {
                "hit_ops_per_s": {k: round(v) for k, v in hit_med.items()},
                "hit_ratio_vs_raw": {k: round(v, 2) for k, v in ratios.items()},
                "miss_us": {k: round(v, 1) for k, v in misses.items()},
                "miss_cost_vs_raw": {k: round(v, 2) for k, v in miss_ratios.items()},
            }
    finally:
        try:
            await near.stop()
            await remote.stop()
            await raw_client.aclose()
        finally:  # every contender's keys start with prefix (cashews, aiocache included)
            await cleanup(url, prefix)
    return results


async def cleanup(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    async for key in client.scan_iter(match=f"{prefix}*", count=1000):
        await client.unlink(key)
    await client.aclose()


def print_table(results: dict[str, Any]) -> None:
    for kind, r in results.items():
        print(f"\n{kind} value")
        print(f"{'contender':16} {'hits/s':>10} {'vs raw':>7} {'miss us':>9} {'vs raw':>7}")
        for name, ops in r["hit_ops_per_s"].items():
            miss = r["miss_us"].get(name)
            cost = r["miss_cost_vs_raw"].get(name)
            print(
                f"{name:16} {ops:>10} {r['hit_ratio_vs_raw'][name]:>6}x "
                f"{miss if miss is not None else '-':>9} "
                f"{(str(cost) + 'x') if cost is not None else '-':>7}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--redis",
        default=os.environ.get("NATIVEKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = parser.parse_args()
    results = asyncio.run(run(args.redis, args.quick))
    print_table(results)
    rows = []
    for kind, r in results.items():
        hits = r["hit_ops_per_s"]
        rows.append(
            harness.row(
                f"Redis cache hits, {kind} value",
                unit="hits/s",
                figure=hits["nativekit"],
                peer="raw redis-py GET + decode",
                peer_figure=hits["raw"],
                target=0.9,
            )
        )
        rows.append(
            harness.row(
                f"near-cache hits, {kind} value",
                unit="hits/s",
                figure=hits["nativekit_near"],
                peer="raw redis-py GET + decode",
                peer_figure=hits["raw"],
                target=50.0,
            )
        )
    first = rows[0]
    harness.headline(
        "cache_hit",
        what=first["what"],
        unit=first["unit"],
        figure=first["figure"],
        peer=first["peer"],
        peer_figure=first["peer_figure"],
        target=first["target"],
        rows=rows[1:],
        details={"python": platform.python_version(), "cpus": os.cpu_count(), "results": results},
    )


if __name__ == "__main__":
    main()
