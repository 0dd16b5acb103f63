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

    Built like :class:`CacheCore` (backend, prefix, service, registry, limits, breaker,
    lock lease, near cache); ``svc.cache`` builds one from the settings.
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
