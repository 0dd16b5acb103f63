"""Caching: ``@svc.cached`` / ``@cache.cached`` on ``async def``, on Redis or in memory.

The Redis backend is ``nativekit.backends.redis.RedisCache``; ``svc.cache`` picks
it (or ``MemoryCache``) from ``NATIVEKIT_REDIS_URL``.
"""

from __future__ import annotations

from nativekit.cache._backend import CacheBackend, MemoryCache
from nativekit.cache._cache import Cache
from nativekit.cache._decorator import CachedFunction, CacheOptions
from nativekit.cache._near import InvalidationSource, NearCache

__all__ = [
    "Cache",
    "CacheBackend",
    "CachedFunction",
    "CacheOptions",
    "InvalidationSource",
    "MemoryCache",
    "NearCache",
]
