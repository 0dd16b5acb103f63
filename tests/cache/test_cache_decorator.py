"""@cache.cached on both backends: typed round trips, None, keys, invalidation, stampedes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from nativekit.cache import Cache


class Product(BaseModel):
    """A cached model."""

    sku: str
    price: float
    added: datetime


class ProductV2(BaseModel):
    """The same model after a schema change."""

    sku: str
    price: float
    added: datetime
    currency: str


class Counter:
    """Counts calls of a cached function."""

    def __init__(self) -> None:
        self.calls = 0


WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def test_model_comes_back_as_model(cache: Cache) -> None:
    """A pydantic model result is returned as the same model on a hit."""
    seen = Counter()

    @cache.cached(ttl=10, key="product:{sku}")
    async def get(sku: str) -> Product:
        seen.calls += 1
        return Product(sku=sku, price=2.5, added=WHEN)

    first = await get("a")
    second = await get("a")
    assert isinstance(second, Product)
    assert second == first == Product(sku="a", price=2.5, added=WHEN)
    assert seen.calls == 1
    assert cache.stats.get(get.stats.name).hits == 1


async def test_containers_of_models_and_datetimes_round_trip(cache: Cache) -> None:
    """Lists, dicts, optionals and datetimes keep their types through the cache."""

    @cache.cached(ttl=10)
    async def listing(n: int) -> list[Product]:
        return [Product(sku=str(i), price=i, added=WHEN) for i in range(n)]

    @cache.cached(ttl=10)
    async def mapping(n: int) -> dict[str, datetime | None]:
        return {"at": WHEN, "none": None}

    await listing(2)
    hit = await listing(2)
    assert all(isinstance(p, Product) for p in hit) and len(hit) == 2
    await mapping(1)
    assert await mapping(1) == {"at": WHEN, "none": None}


async def test_none_is_cached(cache: Cache) -> None:
    """A None result is cached like any other value."""
    seen = Counter()

    @cache.cached(ttl=10, key="maybe:{sku}")
    async def find(sku: str) -> Product | None:
        seen.calls += 1
        return None

    assert await find("x") is None
    assert await find("x") is None
    assert seen.calls == 1


async def test_none_ttl_zero_does_not_cache_none(cache: Cache) -> None:
    """none_ttl=0 leaves None results uncached while values stay cached."""
    seen = Counter()

    @cache.cached(ttl=10, none_ttl=0, key="maybe:{sku}")
    async def find(sku: str) -> str | None:
        seen.calls += 1
        return None if sku == "missing" else sku

    await find("missing")
    await find("missing")
    await find("here")
    await find("here")
    assert seen.calls == 3


async def test_none_expires_after_none_ttl(cache: Cache, eventually: Any) -> None:
    """A cached None lives none_ttl seconds, not ttl."""
    seen = Counter()

    @cache.cached(ttl=60, none_ttl=0.05, key="maybe:{sku}")
    async def find(sku: str) -> str | None:
        seen.calls += 1
        return None

    await find("a")

    async def recomputed() -> bool:
        await find("a")
        return seen.calls > 1

    await eventually(recomputed)


async def test_escaped_key_parts_do_not_collide(cache: Cache) -> None:
    """Arguments containing ':' cannot produce another argument pair's key."""

    @cache.cached(ttl=10, key="pair:{a}:{b}")
    async def pair(a: str, b: str) -> str:
        return f"{a}|{b}"

    assert await pair("x:y", "z") == "x:y|z"
    assert await pair("x", "y:z") == "x|y:z"


async def test_default_key_binds_positional_and_keyword_alike(cache: Cache) -> None:
    """The default key is the same however the arguments are passed, and differs by value."""
    seen = Counter()

    @cache.cached(ttl=10)
    async def price(sku: str, qty: int = 1) -> float:
        seen.calls += 1
        return qty * 2.0

    await price("a", 2)
    await price(sku="a", qty=2)
    await price("a", qty=2)
    assert seen.calls == 1
    await price("a")
    await price("a", 1)
    assert seen.calls == 2
    await price("b", 2)
    assert seen.calls == 3


async def test_ignored_parameters_stay_out_of_the_key(cache: Cache) -> None:
    """Injected dependencies listed in ignore= do not split the cache."""
    seen = Counter()

    @cache.cached(ttl=10, ignore=["db"])
    async def load(sku: str, db: object) -> str:
        seen.calls += 1
        return sku

    await load("a", object())
    await load("a", object())
    assert seen.calls == 1


async def test_changed_return_type_never_reads_old_entries(cache: Cache) -> None:
    """A new return schema gets new keys, so old entries are not decoded as the new type."""

    @cache.cached(ttl=10, key="product:{sku}")
    async def old(sku: str) -> Product:
        return Product(sku=sku, price=1, added=WHEN)

    @cache.cached(ttl=10, key="product:{sku}")
    async def new(sku: str) -> ProductV2:
        return ProductV2(sku=sku, price=1, added=WHEN, currency="EUR")

    await old("a")
    assert (await new("a")).currency == "EUR"
    assert cache.stats.get(new.stats.name).errors["decode"] == 0


async def test_invalidate_by_arguments(cache: Cache) -> None:
    """fn.invalidate(**args) drops one entry; the next call recomputes it."""
    seen = Counter()

    @cache.cached(ttl=10, key="product:{sku}")
    async def get(sku: str, verbose: bool = False) -> int:
        seen.calls += 1
        return seen.calls

    assert await get("a") == 1
    assert await get("b") == 2
    assert await get.invalidate(sku="a") is True
    assert await get("a") == 3
    assert await get("b") == 2


async def test_invalidate_tags(cache: Cache) -> None:
    """invalidate_tags drops every entry filed under a tag, and only those."""
    seen = Counter()

    @cache.cached(ttl=10, key="product:{sku}", tags=["products", "product:{sku}"])
    async def get(sku: str) -> int:
        seen.calls += 1
        return seen.calls

    @cache.cached(ttl=10, key="user:{uid}", tags=["users"])
    async def user(uid: int) -> int:
        seen.calls += 1
        return seen.calls

    await get("a"), await get("b"), await user(1)
    assert seen.calls == 3
    assert await cache.invalidate_tags("product:a") == 1
    await get("a"), await get("b"), await user(1)
    assert seen.calls == 4
    assert await cache.invalidate_tags("products") == 2
    await get("a"), await get("b"), await user(1)
    assert seen.calls == 6


async def test_hundred_concurrent_misses_call_once(cache: Cache, eventually: Any) -> None:
    """100 concurrent misses of one key run the function once; 99 calls are coalesced."""
    seen = Counter()
    release = asyncio.Event()

    @cache.cached(ttl=10, key="hot:{sku}")
    async def get(sku: str) -> Product:
        seen.calls += 1
        await release.wait()
        return Product(sku=sku, price=1, added=WHEN)

    calls = [asyncio.ensure_future(get("hot")) for _ in range(100)]
    stats = cache.stats.get(get.stats.name)

    async def all_missed() -> bool:
        return stats.misses + stats.coalesced == 100

    await eventually(all_missed)  # every call missed before the function may finish
    release.set()
    results = await asyncio.gather(*calls)
    assert seen.calls == 1
    assert all(r == results[0] for r in results)
    assert (stats.misses, stats.coalesced, stats.hits) == (1, 99, 0)


async def test_errors_propagate_to_every_waiter_and_are_not_cached(cache: Cache) -> None:
    """A failing call raises to all coalesced callers and the next call retries."""
    seen = Counter()

    @cache.cached(ttl=10, key="k:{n}")
    async def boom(n: int) -> int:
        seen.calls += 1
        await asyncio.sleep(0.01)
        if seen.calls == 1:
            raise RuntimeError("down")
        return n

    results = await asyncio.gather(boom(1), boom(1), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert await boom(1) == 1


async def test_a_cancelled_caller_does_not_cancel_the_others(cache: Cache) -> None:
    """One caller giving up leaves the shared computation running for the rest."""
    release = asyncio.Event()

    @cache.cached(ttl=10, key="k:{n}")
    async def slow(n: int) -> int:
        await release.wait()
        return n

    first = asyncio.ensure_future(slow(1))
    second = asyncio.ensure_future(slow(1))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == 1


async def test_values_over_the_size_limit_are_returned_not_stored(cache: Cache) -> None:
    """A value larger than max_value_bytes is returned but not cached, and counted."""
    cache.max_value_bytes = 100
    seen = Counter()

    @cache.cached(ttl=10, key="big:{n}")
    async def big(n: int) -> str:
        seen.calls += 1
        return "x" * n

    assert await big(500) == "x" * 500
    await big(500)
    assert seen.calls == 2
    assert cache.stats.get(big.stats.name).errors["too_large"] == 2
    await big(5)
    await big(5)
    assert seen.calls == 3


async def test_unreadable_entry_is_a_miss(cache: Cache) -> None:
    """Garbage under a key is counted as a decode error and recomputed."""

    @cache.cached(ttl=10, key="k:{n}")
    async def get(n: int) -> int:
        return n

    await cache.backend.set(get.key_for({"n": 1}), b"v1,1|not json", ttl=10)
    assert await get(1) == 1
    assert cache.stats.get(get.stats.name).errors["decode"] == 1
    assert await get(1) == 1
    assert cache.stats.get(get.stats.name).hits == 1


async def test_early_refresh_serves_and_recomputes_in_background(
    cache: Cache, eventually: Any
) -> None:
    """A key due for early refresh is served at once and recomputed in the background."""
    seen = Counter()

    @cache.cached(ttl=60, key="k:{n}", early_refresh=1e9)
    async def get(n: int) -> int:
        seen.calls += 1
        await asyncio.sleep(0.01)  # the measured compute time drives early refresh
        return seen.calls

    assert await get(1) == 1
    assert await get(1) == 1  # stale serve, refresh started

    async def refreshed() -> bool:
        return await get(1) > 1

    await eventually(refreshed)
    assert cache.stats.get(get.stats.name).stale >= 1


async def test_without_early_refresh_hits_never_recompute(cache: Cache) -> None:
    """Hits on a fresh key do not run the function when early refresh is off."""
    seen = Counter()

    @cache.cached(ttl=60, key="k:{n}")
    async def get(n: int) -> int:
        seen.calls += 1
        await asyncio.sleep(0.01)
        return seen.calls

    for _ in range(20):
        await get(1)
    assert seen.calls == 1
    assert cache.stats.get(get.stats.name).stale == 0


async def test_lease_lets_one_of_two_caches_compute(cache: Cache) -> None:
    """With lock=True, two caches (as two replicas) sharing a backend compute a key once."""
    other = Cache(cache.backend, prefix=cache.prefix)
    seen = Counter()

    def define(target: Cache) -> Any:
        @target.cached(ttl=10, key="k:{n}", lock=True)
        async def get(n: int) -> int:
            seen.calls += 1
            await asyncio.sleep(0.05)
            return n

        return get

    one, two = define(cache), define(other)
    assert await asyncio.gather(one(7), two(7)) == [7, 7]
    assert seen.calls == 1


async def test_equal_but_differently_typed_arguments_get_their_own_entries(cache: Cache) -> None:
    """1, True and 1.0 compare equal but render differently, so each has its own entry."""
    seen: list[Any] = []

    @cache.cached(ttl=10, key="k:{x}")
    async def get(x: Any) -> str:
        seen.append(x)
        return repr(x)

    assert [await get(v) for v in (1, True, 1.0)] == ["1", "True", "1.0"]
    assert [await get(v) for v in (1, True, 1.0)] == ["1", "True", "1.0"]
    assert await get("1") == "1"  # a template renders str(x): "1" is the key of 1
    assert len(seen) == 3


async def test_failed_early_refresh_keeps_serving_and_is_logged(
    cache: Cache, eventually: Any
) -> None:
    """A background refresh that raises leaves the cached value in place and logs once."""
    events: list[str] = []

    class Log:
        def warning(self, event: str, **fields: Any) -> None:
            events.append(event)

    cache.limited_log.log = Log()
    seen = Counter()

    @cache.cached(ttl=60, key="k:{n}", early_refresh=1e9)
    async def get(n: int) -> int:
        seen.calls += 1
        await asyncio.sleep(0.01)
        if seen.calls > 1:
            raise RuntimeError("database down")
        return 1

    assert await get(1) == 1
    assert await get(1) == 1

    async def logged() -> bool:
        return "cache.refresh.failed" in events

    await eventually(logged)
    assert await get(1) == 1


async def test_result_not_matching_the_return_type_is_returned_not_stored(cache: Cache) -> None:
    """A result the annotation cannot serialize is returned, counted and not cached."""
    seen = Counter()

    @cache.cached(ttl=10, key="k:{n}")
    async def get(n: int) -> int:
        seen.calls += 1
        return object()  # type: ignore[return-value]

    await get(1)
    await get(1)
    assert seen.calls == 2
    assert cache.stats.get(get.stats.name).errors["encode"] == 2


async def test_lease_held_elsewhere_is_waited_for_then_computed(cache: Cache) -> None:
    """If the lease holder never stores a value, the waiter computes once the lease expires."""
    cache.lock_lease = 0.1
    seen = Counter()

    @cache.cached(ttl=10, key="k:{n}", lock=True)
    async def get(n: int) -> int:
        seen.calls += 1
        return n

    assert await cache.backend.acquire(get.key_for({"n": 1}) + "|lease", lease=10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await get(1) == 1
    assert loop.time() - started >= 0.1
    assert seen.calls == 1


async def test_methods_are_cached_with_self_left_out_of_the_key(cache: Cache) -> None:
    """A cached method binds self; ignore=["self"] shares entries across instances."""
    seen = Counter()

    class Repo:
        @cache.cached(ttl=10, ignore=["self"])
        async def price(self, sku: str) -> int:
            seen.calls += 1
            return len(sku)

        @cache.cached(ttl=10, key="stock:{sku}")
        async def stock(self, sku: str) -> int:
            seen.calls += 1
            return 5

    assert await Repo().price("abc") == 3
    assert await Repo().price(sku="abc") == 3
    assert await Repo().stock("abc") == 5
    assert await Repo().stock("abc") == 5
    assert seen.calls == 2
    assert await Repo().stock.invalidate(sku="abc") is True
    assert await Repo().stock("abc") == 5
    assert seen.calls == 3
