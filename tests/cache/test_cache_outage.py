"""Backend failures never fail a call: fall through, count, log, break the circuit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis

from nativekit import Service, Settings
from nativekit.backends import Backends
from nativekit.backends.redis import RedisCache
from nativekit.cache import Cache, MemoryCache
from nativekit.errors import BackendUnavailable
from nativekit.testing import serve
from nativekit.testing import servers as test_servers


class FlakyBackend(MemoryCache):
    """A MemoryCache that fails every call while ``down``, counting calls."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise BackendUnavailable("flaky backend is down")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return await super().get(key)

    async def set(self, key: str, value: bytes, *, ttl: float, tags: Sequence[str] = ()) -> None:
        self._check()
        await super().set(key, value, ttl=ttl, tags=tags)

    async def delete(self, keys: Sequence[str]) -> int:
        self._check()
        return await super().delete(keys)

    async def invalidate_tags(self, tags: Sequence[str]) -> list[str]:
        self._check()
        return await super().invalidate_tags(tags)

    async def ping(self) -> None:
        self._check()


async def test_breaker_opens_skips_the_backend_and_recovers(eventually: Any) -> None:
    """After N failures the backend is not called until a trial call succeeds."""
    backend = FlakyBackend()
    cache = Cache(backend, breaker_failures=3, breaker_reset=0.1)
    calls = 0

    @cache.cached(ttl=10, key="k:{n}")
    async def get(n: int) -> int:
        nonlocal calls
        calls += 1
        return n

    backend.down = True
    assert await get(0) == 0  # GET and SET fail: 2 failures
    assert not cache.breaker.is_open
    assert await get(1) == 1  # GET fails: open; SET skipped
    assert cache.breaker.is_open
    seen = backend.calls
    for i in range(10):
        assert await get(i) == i
    assert backend.calls == seen  # open: no backend calls at all
    stats = cache.stats.get(get.stats.name)
    assert stats.errors["backend"] == 3
    assert stats.errors["breaker_open"] == 1 + 20
    status = await cache.check()
    assert status.status == "warn" and "circuit open" in (status.output or "")

    backend.down = False

    async def closed() -> bool:
        await get(99)
        return not cache.breaker.is_open

    await eventually(closed)
    assert (await cache.check()).status == "pass"


async def test_failed_invalidation_reports_false_and_counts() -> None:
    """Invalidation against a dead backend returns False / -1 instead of raising."""
    backend = FlakyBackend()
    cache = Cache(backend)

    @cache.cached(ttl=10, key="k:{n}")
    async def get(n: int) -> int:
        return n

    backend.down = True
    assert await get.invalidate(n=1) is False
    assert await cache.invalidate_tags("t") == -1
    assert cache.breaker.failures == 2


async def test_rate_limited_log_suppresses_repeats() -> None:
    """Backend failures are logged once per interval, the rest only counted."""
    lines: list[tuple[str, dict[str, Any]]] = []

    class Log:
        def warning(self, event: str, **fields: Any) -> None:
            lines.append((event, fields))

    backend = FlakyBackend()
    cache = Cache(backend, breaker_failures=1000, log=Log())

    @cache.cached(ttl=10, key="k:{n}")
    async def get(n: int) -> int:
        return n

    backend.down = True
    for i in range(20):
        await get(i)
    failed = [f for e, f in lines if e == "cache.backend.failed"]
    assert [f["operation"] for f in failed] == ["GET", "SET"]
    assert cache.stats.get(get.stats.name).errors["backend"] == 40


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_a_hanging_redis_costs_at_most_the_cache_timeout(silent_server: str) -> None:
    """A Redis that never answers delays a call by about NATIVEKIT_CACHE_TIMEOUT_SECONDS."""
    settings = Settings(redis={"url": silent_server}, cache={"timeout_seconds": 0.1})
    cache = Backends("t", settings).cache()

    @cache.cached(ttl=10, key="k:{n}")
    async def get(n: int) -> int:
        return n

    started = time.monotonic()
    assert await get(1) == 1
    assert time.monotonic() - started < 1.0  # one GET and one SET timing out, 0.1 s each
    assert cache.stats.get(get.stats.name).errors["backend"] == 2
    await cache.stop()


@pytest.mark.redis
@pytest.mark.slow
async def test_redis_stopped_mid_test_calls_still_succeed(
    monkeypatch: pytest.MonkeyPatch, unique: str
) -> None:
    """Stopping a real Redis under a service: calls succeed, counters move, readiness warns."""
    monkeypatch.delenv(test_servers.REDIS_ENV, raising=False)  # never the shared server
    server = test_servers.start_redis(reuse=False)
    assert server.process is not None
    try:
        svc = Service(
            "outage",
            settings=Settings(
                redis={"url": server.url},
                cache={"timeout_seconds": 0.2, "breaker_failures": 3},
                telemetry={"health_cache_seconds": 0},
            ),
        )
        calls = 0

        @svc.cached(ttl=60, key="product:{sku}")
        async def get(sku: str) -> dict[str, str]:
            nonlocal calls
            calls += 1
            return {"sku": sku}

        async with serve(svc) as client:
            assert isinstance(svc.cache.backend, RedisCache)
            assert await get(unique) == {"sku": unique}
            assert await get(unique) == {"sku": unique}
            assert calls == 1
            ready = (await client.get("/readyz")).json()
            assert ready["checks"]["cache"][0]["status"] == "pass"

            server.stop()
            for _ in range(10):
                assert await get(unique) == {"sku": unique}
            assert calls == 11
            stats = svc.cache.stats.get(get.stats.name)
            assert stats.errors["backend"] >= 3
            assert stats.errors["breaker_open"] > 0

            ready = (await client.get("/readyz")).json()
            assert ready["checks"]["cache"][0]["status"] == "warn"
            metrics = (await client.get("/metrics")).text
            line = next(
                m
                for m in metrics.splitlines()
                if m.startswith("cache_errors_total") and 'kind="backend"' in m
            )
            assert 'service="outage"' in line and float(line.rsplit(" ", 1)[1]) >= 3
    finally:
        server.stop()


@pytest.mark.redis
async def test_service_cache_uses_redis_and_exposes_metrics(redis_url: str, unique: str) -> None:
    """svc.cached on a Redis URL stores in Redis and counts hits and misses in /metrics."""
    svc = Service("shop", settings=Settings(redis={"url": redis_url}))

    @svc.cached(ttl=60, key="p:{sku}", name="products")
    async def get(sku: str) -> int:
        return len(sku)

    async with serve(svc) as client:
        await get(unique)
        await get(unique)
        raw = aioredis.Redis.from_url(redis_url)
        assert await raw.exists(get.key_for({"sku": unique}))
        await raw.aclose()
        metrics = (await client.get("/metrics")).text
    assert 'cache_hits_total{cache="products",layer="remote",service="shop"} 1.0' in metrics
    assert 'cache_misses_total{cache="products",service="shop"} 1.0' in metrics
