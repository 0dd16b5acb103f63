"""The cache core: a backend behind a circuit breaker, counters, single flight, near cache.

Every backend failure becomes a miss: the caller's function runs, the failure
is counted and logged at a rate limit, and after repeated failures the breaker
stops calling the backend for a while.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from nativekit._health import CheckResult
from nativekit._lifecycle import cancel_all
from nativekit._telemetry.logging import get_logger
from nativekit.cache._backend import CacheBackend, MemoryCache
from nativekit.cache._near import InvalidationSource, NearCache, NearSync
from nativekit.cache._stats import CacheStats, CircuitBreaker, RateLimitedLog, StatsCollector
from nativekit.errors import ConfigError


@dataclass(eq=False)
class Flight:
    """One computation of a key in this process; concurrent callers await ``task``."""

    tags: tuple[str, ...]
    invalidated: bool = False
    task: asyncio.Task[Any] | None = field(default=None)


class CacheCore:
    """A cache in front of a :class:`CacheBackend`: what cached functions call.

    Args:
        backend: where entries live; a :class:`MemoryCache` when omitted.
        prefix: prepended to every key and tag (isolates services sharing a Redis).
        service: value of the ``service`` label on the metrics.
        registry: Prometheus registry for the ``cache_*`` counters (a private one if None).
        max_value_bytes: larger values are returned but not stored.
        breaker_failures: consecutive failures that open the circuit breaker.
        breaker_reset: seconds the breaker stays open before one trial call.
        lock_lease: seconds a cross-process computation lease lasts (``lock=True``).
        near: in-process layer in front of a :class:`RedisCache` (needs its channel).
    """

    def __init__(
        self,
        backend: CacheBackend | None = None,
        *,
        prefix: str = "nkc",
        service: str = "nativekit",
        registry: CollectorRegistry | None = None,
        max_value_bytes: int = 1_048_576,
        breaker_failures: int = 5,
        breaker_reset: float = 5.0,
        lock_lease: float = 2.0,
        near: NearCache | None = None,
        log: Any = None,
    ) -> None:
        self.backend: CacheBackend = backend if backend is not None else MemoryCache()
        self.prefix = prefix
        self.max_value_bytes = max_value_bytes
        self.lock_lease = lock_lease
        self.breaker = CircuitBreaker(threshold=breaker_failures, reset=breaker_reset)
        self.log = log if log is not None else get_logger(service=service)
        self.limited_log = RateLimitedLog(self.log)
        self.stats = StatsCollector(service)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.stats.register(self.registry)
        self.near = near
        self.inflight: dict[str, Flight] = {}
        self._sync: NearSync | None = None
        if near is not None:
            backend = self.backend
            if not isinstance(backend, InvalidationSource) or backend.channel is None:
                raise ConfigError(
                    "A near cache needs a backend with an invalidation channel, such as "
                    "RedisCache(client, channel='…'); other replicas could not tell it "
                    "about changes otherwise."
                )
            self._sync = NearSync(near, backend, self.log)

    def tag_key(self, tag: str) -> str:
        """The backend key of the index for ``tag``."""
        return f"{self.prefix}:tag:{tag}"

    # -- backend calls that never raise ------------------------------------------------

    async def fetch(self, key: str, stats: CacheStats) -> bytes | None:
        """The entry at ``key``; None on a miss or when the backend fails."""
        breaker = self.breaker
        if breaker.open_until and not breaker.allow():
            stats.errors["breaker_open"] += 1
            return None
        try:
            raw = await self.backend.get(key)
        except Exception as exc:
            self.failed("GET", exc, stats)
            return None
        if breaker.failures:
            breaker.success()
        return raw

    async def store(
        self, key: str, raw: bytes, *, ttl: float, tags: Sequence[str], stats: CacheStats
    ) -> None:
        """Store an entry; failures are counted, never raised."""
        if not self.breaker.allow():
            stats.errors["breaker_open"] += 1
            return
        try:
            await self.backend.set(key, raw, ttl=ttl, tags=tags)
        except Exception as exc:
            self.failed("SET", exc, stats)
            return
        self.breaker.success()

    def failed(self, operation: str, exc: BaseException, stats: CacheStats | None) -> None:
        """Count, log (rate limited) and feed the breaker one backend failure."""
        if stats is not None:
            stats.errors["backend"] += 1
        opened = self.breaker.failure()
        self.limited_log.warning(
            "cache.backend.failed",
            key=f"failed:{operation}",
            operation=operation,
            error=f"{type(exc).__name__}: {exc}",
        )
        if opened:
            self.limited_log.warning(
                "cache.breaker.opened",
                key="breaker",
                failures=self.breaker.failures,
                reset_s=self.breaker.reset,
            )

    # -- invalidation ------------------------------------------------------------------

    async def delete(self, keys: Sequence[str]) -> bool:
        """Remove entries by full key; False if the backend could not be reached."""
        for key in keys:
            flight = self.inflight.get(key)
            if flight is not None:
                flight.invalidated = True
        if self.near is not None:
            self.near.discard(list(keys))
        try:
            await self.backend.delete(keys)
        except Exception as exc:
            self.failed("DELETE", exc, None)
            return False
        return True

    async def invalidate_tags(self, *tags: str) -> int:
        """Remove every entry cached under one of ``tags``; the number removed.

        Returns -1 when the backend could not be reached (entries then expire by TTL).
        """
        tag_keys = [self.tag_key(t) for t in tags]
        wanted = set(tag_keys)
        for flight in self.inflight.values():
            if wanted.intersection(flight.tags):
                flight.invalidated = True
        try:
            keys = await self.backend.invalidate_tags(tag_keys)
        except Exception as exc:
            self.failed("INVALIDATE", exc, None)
            return -1
        if self.near is not None:
            self.near.discard(keys)
        return len(keys)

    # -- lifecycle and health ------------------------------------------------------------

    async def check(self) -> CheckResult:
        """Readiness: warn while the breaker is open; raise if the backend does not answer."""
        if self.breaker.is_open:
            return CheckResult(
                status="warn",
                output=f"circuit open after {self.breaker.failures} failures; "
                "cached functions run uncached",
            )
        await self.backend.ping()
        return CheckResult()

    async def start(self) -> None:
        """Start keeping the near cache coherent (no-op without one)."""
        if self._sync is not None:
            await self._sync.start()

    async def stop(self) -> None:
        """Stop the near cache sync, end the computations still running, close the backend.

        A computation still running (an early refresh in the background, or one whose
        callers left) is cancelled first: one that ran on would call a closed backend,
        and a Redis client opens a new connection that nothing closes any more.
        """
        if self._sync is not None:
            await self._sync.stop()
        tasks = [f.task for f in self.inflight.values() if f.task is not None]
        if tasks:
            await cancel_all(tasks)
        await self.backend.aclose()

    async def near_ready(self) -> None:
        """Wait until the near cache is subscribed to invalidations (no-op without one)."""
        if self._sync is not None:
            await self._sync.subscribed.wait()
