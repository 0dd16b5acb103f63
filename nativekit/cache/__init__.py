"""Caching: ``@svc.cached`` / ``@cache.cached`` on ``async def``, on Redis or in memory.

``RedisCache`` loads redis-py, so it is imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nativekit.cache._backend import CacheBackend, MemoryCache
from nativekit.cache._cache import Cache
from nativekit.cache._decorator import CachedFunction, CacheOptions
from nativekit.cache._near import NearCache

if TYPE_CHECKING:
    from nativekit.backends.redis._cache import RedisCache

__all__ = [
    "Cache",
    "CacheBackend",
    "CacheOptions",
    "CachedFunction",
    "MemoryCache",
    "NearCache",
    "RedisCache",
]


def __getattr__(name: str) -> Any:
    if name == "RedisCache":
        from nativekit.backends.redis._cache import RedisCache

        return RedisCache
    raise AttributeError(f"module 'nativekit.cache' has no attribute {name!r}")
