"""``@cache.cached``: typed results, checked keys, single-flight, leases and early refresh."""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, ParamSpec, TypedDict, TypeVar

from nativekit.cache.cache import Cache, Flight
from nativekit.cache.codec import Codec, DecodeError, entry_times, return_adapter
from nativekit.cache.keys import compile_template, digest_builder, make_binder, schema_digest
from nativekit.cache.near import MISSING
from nativekit.errors import ConfigError

P = ParamSpec("P")
R = TypeVar("R")

# Keys of single-argument calls are remembered; exact types only, since 1 == True == 1.0.
_MEMO_TYPES = (str, int)
_MEMO_SIZE = 4096


class CacheOptions(TypedDict, total=False):
    """Options of ``cached`` besides ``ttl``.

    Attributes:
        key: template such as ``"product:{sku}"`` naming parameters; default: the
            qualified name and a digest of all arguments.
        tags: templates of tags to file the entry under, for ``invalidate_tags``.
        none_ttl: seconds a ``None`` result is kept (default ``ttl``; 0: not cached).
        name: the cache's name in metrics (default: the function's qualified name).
        lock: take a short cross-process lease so one replica computes a missing key.
        early_refresh: recompute hot keys before expiry (probabilistic early
            expiration); ``True`` or a float ``beta`` (larger: earlier).
        ignore: parameters left out of the default key (injected dependencies).
    """

    key: str | None
    tags: Sequence[str]
    none_ttl: float | None
    name: str | None
    lock: bool
    early_refresh: bool | float
    ignore: Sequence[str]


class CachedFunction(Generic[P, R]):
    """A cached ``async def``: call it like the original; also ``await f.invalidate(...)``."""

    def __init__(
        self,
        cache: Cache,
        func: Callable[P, Coroutine[Any, Any, R]],
        *,
        ttl: float,
        key: str | None = None,
        tags: Sequence[str] = (),
        none_ttl: float | None = None,
        name: str | None = None,
        lock: bool = False,
        early_refresh: bool | float = False,
        ignore: Sequence[str] = (),
    ) -> None:
        where = f"@cached on {func.__qualname__}"
        if not inspect.iscoroutinefunction(func):
            raise ConfigError(f"{where}: the function must be 'async def'.")
        if ttl <= 0:
            raise ConfigError(f"{where}: ttl must be > 0 seconds, got {ttl!r}.")
        functools.update_wrapper(self, func)
        self.cache = cache
        self.func = func
        self.ttl = float(ttl)
        self.none_ttl = self.ttl if none_ttl is None else float(none_ttl)
        self.lock = lock
        self.beta = float(early_refresh) if early_refresh is not True else 1.0
        self.bind, names = make_binder(func)
        unknown = set(ignore) - set(names)
        if unknown:
            raise ConfigError(f"{where}: ignore names unknown parameters {sorted(unknown)}.")
        self.adapter, annotation = return_adapter(func, where)
        self.codec = Codec(self.adapter)
        self.schema = schema_digest(self.adapter, annotation)
        if key is None:
            self.build = digest_builder(names, frozenset(ignore))
            self.head = f"{cache.prefix}:{func.__module__}.{func.__qualname__}:"
        else:
            self.build = compile_template(key, names, where=where)
            self.head = f"{cache.prefix}:"
        self.tail = f"|{self.schema}"
        self.tag_builders = [compile_template(t, names, where=f"{where} tag") for t in tags]
        self.stats = cache.stats.get(name or func.__qualname__)
        self.memo: dict[Any, str] = {}  # single str/int argument -> key

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        """Bind to ``instance`` when used on a method (``self`` is passed on)."""
        return self if instance is None else BoundCachedFunction(self, instance)

    def key_for(self, values: dict[str, Any]) -> str:
        """The backend key for bound argument ``values``."""
        return self.head + self.build(values) + self.tail

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return the cached result, or run the function and cache it."""
        if not kwargs and len(args) == 1 and type(args[0]) in _MEMO_TYPES:
            key = self.memo.get(args[0])
            if key is None:
                key = self.head + self.build(self.bind(args, kwargs)) + self.tail
                if len(self.memo) < _MEMO_SIZE and len(key) <= 256:
                    self.memo[args[0]] = key
        else:
            key = self.head + self.build(self.bind(args, kwargs)) + self.tail
        cache = self.cache
        near = cache.near
        epoch = 0
        if near is not None and near.active:
            found = near.get(key)
            if found is not MISSING:
                self.stats.near_hits += 1
                return found  # type: ignore[no-any-return]
            epoch = near.epoch
        raw = await cache.fetch(key, self.stats)
        if raw is not None:
            try:
                value: R = self.codec.decode(raw)
            except DecodeError:
                self.stats.errors["decode"] += 1
            else:
                self.stats.hits += 1
                if near is not None or self.beta:
                    self._after_hit(key, raw, value, epoch, args, kwargs)
                return value
        return await self._miss(key, args, kwargs, epoch)

    def _after_hit(
        self,
        key: str,
        raw: bytes,
        value: Any,
        epoch: int,
        args: Any,
        kwargs: Any,
    ) -> None:
        expires_at, delta = entry_times(raw)
        near = self.cache.near
        if near is not None:
            near.put(key, value, expires_at=expires_at, epoch=epoch)
        if self.beta and key not in self.cache.inflight:
            jitter = -delta * self.beta * math.log(1.0 - random.random())
            if time.time() + jitter >= expires_at:
                self.stats.stale += 1
                task = self._start_flight(key, args, kwargs, epoch)
                task.add_done_callback(self._refresh_done)

    def _refresh_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.cache.limited_log.warning(
                "cache.refresh.failed",
                key=f"refresh:{self.stats.name}",
                cache=self.stats.name,
                error=repr(task.exception()),
            )

    async def _miss(self, key: str, args: Any, kwargs: Any, epoch: int) -> R:
        flight = self.cache.inflight.get(key)
        if flight is not None and flight.task is not None:
            self.stats.coalesced += 1
            task = flight.task
        else:
            self.stats.misses += 1
            task = self._start_flight(key, args, kwargs, epoch)
        # shield: a caller that gives up must not cancel the others' computation
        result: R = await asyncio.shield(task)
        return result

    def _start_flight(self, key: str, args: Any, kwargs: Any, epoch: int) -> asyncio.Task[Any]:
        values = self.bind(args, kwargs)
        tags = tuple(self.cache.tag_key(b(values)) for b in self.tag_builders)
        flight = Flight(tags)
        self.cache.inflight[key] = flight
        task = asyncio.ensure_future(self._compute(key, args, kwargs, flight, epoch))
        task.add_done_callback(_retrieve)
        flight.task = task
        return task

    async def _compute(self, key: str, args: Any, kwargs: Any, flight: Flight, epoch: int) -> R:
        token = None
        try:
            if self.lock:
                token, found = await self._lease(key)
                if found is not MISSING:
                    self.stats.coalesced += 1
                    return found  # type: ignore[no-any-return]
            started = time.perf_counter()
            value = await self.func(*args, **kwargs)
            if not flight.invalidated:
                await self._store(key, value, time.perf_counter() - started, flight, epoch)
            return value
        finally:
            if self.cache.inflight.get(key) is flight:
                del self.cache.inflight[key]
            if token:
                try:
                    await self.cache.backend.release(key + "|lease", token)
                except Exception as exc:
                    self.cache.failed("RELEASE", exc, self.stats)

    async def _store(self, key: str, value: Any, delta: float, flight: Flight, epoch: int) -> None:
        cache = self.cache
        ttl = self.ttl if value is not None else self.none_ttl
        if ttl <= 0:
            return
        try:
            raw = self.codec.encode(value, ttl=ttl, delta=delta)
        except Exception as exc:
            self.stats.errors["encode"] += 1
            cache.limited_log.warning(
                "cache.value.unencodable",
                key=f"encode:{self.stats.name}",
                cache=self.stats.name,
                error=str(exc),
            )
            return
        if len(raw) > cache.max_value_bytes:
            self.stats.errors["too_large"] += 1
            cache.limited_log.warning(
                "cache.value.too_large",
                key=f"large:{self.stats.name}",
                cache=self.stats.name,
                size=len(raw),
                limit=cache.max_value_bytes,
            )
            return
        await cache.store(key, raw, ttl=ttl, tags=flight.tags, stats=self.stats)
        if cache.near is not None and not flight.invalidated:
            cache.near.put(key, value, expires_at=time.time() + ttl, epoch=epoch)

    async def _lease(self, key: str) -> tuple[str | None, Any]:
        """Take the computation lease, or wait for its holder's result (MISSING: compute)."""
        cache = self.cache
        if not cache.breaker.allow():
            return None, MISSING
        lease = cache.lock_lease
        try:
            token = await cache.backend.acquire(key + "|lease", lease=lease)
        except Exception as exc:
            cache.failed("ACQUIRE", exc, self.stats)
            return None, MISSING
        if token is not None:
            return token, MISSING
        deadline = time.monotonic() + lease
        delay = 0.005
        # Polling: the holder is another process; its SET is what we wait for.
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            raw = await cache.fetch(key, self.stats)
            if raw is not None:
                try:
                    return None, self.codec.decode(raw)
                except DecodeError:
                    break
        return None, MISSING

    async def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Remove the entry for these arguments (only the key's fields are needed).

        Returns False if the backend could not be reached (the entry then expires by TTL).
        """
        try:
            values = self.bind(args, kwargs)
        except TypeError:
            values = dict(kwargs)
        try:
            key = self.key_for(values)
        except KeyError as exc:
            raise TypeError(
                f"{self.func.__qualname__}.invalidate() needs argument {exc.args[0]!r}"
            ) from None
        return await self.cache.delete([key])


class BoundCachedFunction:
    """A cached method bound to its instance."""

    __slots__ = ("cached", "instance")

    def __init__(self, cached: CachedFunction[Any, Any], instance: Any) -> None:
        self.cached = cached
        self.instance = instance

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the cached method."""
        return await self.cached(self.instance, *args, **kwargs)

    async def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Remove the entry for these arguments (see :meth:`CachedFunction.invalidate`)."""
        return await self.cached.invalidate(self.instance, *args, **kwargs)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the callers get it; this only marks it as seen
