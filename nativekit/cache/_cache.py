"""``Cache``: the cache of a service; decorate ``async def`` functions with :meth:`Cache.cached`."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, Unpack

from nativekit.cache._core import CacheCore
from nativekit.cache._decorator import CachedFunction, CacheOptions

P = ParamSpec("P")
R = TypeVar("R")


class Cache(CacheCore):
    """A cache in front of a :class:`CacheBackend`; decorate functions with :meth:`cached`.

    Args:
        backend: where entries live; a :class:`MemoryCache` when omitted.
        prefix: prepended to every key and tag (isolates services sharing a Redis).
        service: value of the ``service`` label on the metrics.
        registry: Prometheus registry for the ``cache_*`` counters (a private one if None).
        max_value_bytes: larger values are returned but not stored.
        breaker_failures: consecutive failures that open the circuit breaker.
        breaker_reset: seconds the breaker stays open before one trial call.
        lock_lease: seconds a cross-process computation lease lasts (``lock=True``).
        near: in-process layer in front of a backend with an invalidation channel
            (``RedisCache(client, channel=...)``).
    """

    def cached(
        self, *, ttl: float, **options: Unpack[CacheOptions]
    ) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], CachedFunction[P, R]]:
        """Decorator: cache an ``async def``'s results for ``ttl`` seconds.

        See :class:`CacheOptions` for ``key``, ``tags``, ``none_ttl``, ``name``,
        ``lock``, ``early_refresh`` and ``ignore``.
        """

        def decorator(func: Callable[P, Coroutine[Any, Any, R]]) -> CachedFunction[P, R]:
            return CachedFunction(self, func, ttl=ttl, **options)

        return decorator
