"""Stock storage for inventory: a memory reference and Redis, with atomic reservations.

A reservation holds every line of an order or none. Its record is the
idempotency key: reserving an order twice holds stock once, releasing or
selling twice changes stock once, and a release that arrives before its
reservation (a retried request overtaken by the compensation) leaves a
tombstone that makes the late reservation fail.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from examples.shop.models import Item, Product, Reservation
from examples.shop.unavailable import redis_outage_is_unavailable

if TYPE_CHECKING:
    import redis.asyncio as aioredis

RETAIN = 7 * 24 * 3600  # seconds a finished reservation is remembered


class InventoryStore(Protocol):
    """Products and per-order reservations."""

    async def put(self, sku: str, name: str, price: int, available: int) -> Product: ...
    async def add_if_missing(self, product: Product) -> None: ...
    async def get(self, sku: str) -> Product | None: ...
    async def all(self) -> list[Product]: ...
    async def reserve(self, order_id: str, items: Sequence[Item]) -> Reservation: ...
    async def release(self, order_id: str) -> tuple[Reservation, list[str]]:
        """The reservation after the release, and the SKUs whose stock moved (if any)."""
        ...

    async def sell(self, order_id: str) -> tuple[Reservation, list[str]]:
        """The reservation after the sale, and the SKUs whose stock moved (if any)."""
        ...


def merge(items: Sequence[Item]) -> dict[str, int]:
    """Quantities by SKU, in a stable order (two lines of one SKU become one)."""
    totals: Counter[str] = Counter()
    for item in items:
        totals[item.sku] += item.quantity
    return dict(sorted(totals.items()))


class MemoryInventoryStore:
    """In-process store: each method runs without awaiting, so it is atomic."""

    def __init__(self) -> None:
        self.products: dict[str, Product] = {}
        self.reservations: dict[str, Reservation] = {}
        self.held: dict[str, dict[str, int]] = {}

    def _add(self, sku: str, **deltas: int) -> None:
        product = self.products[sku]
        update = {field: getattr(product, field) + delta for field, delta in deltas.items()}
        self.products[sku] = product.model_copy(update=update)

    async def put(self, sku: str, name: str, price: int, available: int) -> Product:
        old = self.products.get(sku) or Product(
            sku=sku, name=name, price=0, available=0, reserved=0
        )
        product = old.model_copy(update={"name": name, "price": price, "available": available})
        self.products[sku] = product
        return product

    async def add_if_missing(self, product: Product) -> None:
        self.products.setdefault(product.sku, product)

    async def get(self, sku: str) -> Product | None:
        return self.products.get(sku)

    async def all(self) -> list[Product]:
        return [self.products[sku] for sku in sorted(self.products)]

    async def reserve(self, order_id: str, items: Sequence[Item]) -> Reservation:
        if order_id in self.reservations:
            return self.reservations[order_id]
        wanted = merge(items)
        for sku, quantity in wanted.items():
            product = self.products.get(sku)
            if product is None or product.available < quantity:
                reason = f"insufficient stock for {sku}" if product else f"unknown product {sku}"
                return self._record(Reservation(order_id=order_id, state="REJECTED", reason=reason))
        for sku, quantity in wanted.items():
            self._add(sku, available=-quantity, reserved=quantity)
        self.held[order_id] = wanted
        return self._record(Reservation(order_id=order_id, state="RESERVED"))

    def _record(self, reservation: Reservation) -> Reservation:
        self.reservations[reservation.order_id] = reservation
        return reservation

    async def release(self, order_id: str) -> tuple[Reservation, list[str]]:
        current = self.reservations.get(order_id)
        if current is None:  # the release overtook its reservation: refuse that one later
            reservation = Reservation(order_id=order_id, state="RELEASED", reason="released first")
            return self._record(reservation), []
        if current.state != "RESERVED":
            return current, []
        held = self.held.pop(order_id)
        for sku, quantity in held.items():
            self._add(sku, reserved=-quantity, available=quantity)
        return self._record(Reservation(order_id=order_id, state="RELEASED")), list(held)

    async def sell(self, order_id: str) -> tuple[Reservation, list[str]]:
        current = self.reservations.get(order_id)
        if current is None:  # nothing to sell: do not leave a tombstone
            return Reservation(order_id=order_id, state="REJECTED", reason="no reservation"), []
        if current.state != "RESERVED":
            return current, []
        held = self.held.pop(order_id)
        for sku, quantity in held.items():
            self._add(sku, reserved=-quantity, sold=quantity)
        return self._record(Reservation(order_id=order_id, state="SOLD")), list(held)


# KEYS: reservation, product hashes. ARGV: retain, n, quantities..., skus...
_RESERVE = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
local n = tonumber(ARGV[2])
for i = 1, n do
  local avail = redis.call('HGET', KEYS[i + 1], 'available')
  local reason = nil
  if not avail then reason = 'unknown product ' .. ARGV[2 + n + i]
  elseif tonumber(avail) < tonumber(ARGV[2 + i]) then
    reason = 'insufficient stock for ' .. ARGV[2 + n + i] end
  if reason then
    local rec = cjson.encode({state = 'REJECTED', reason = reason})
    redis.call('SET', KEYS[1], rec, 'EX', ARGV[1])
    return rec
  end
end
local held = {}
for i = 1, n do
  local q = tonumber(ARGV[2 + i])
  redis.call('HINCRBY', KEYS[i + 1], 'available', -q)
  redis.call('HINCRBY', KEYS[i + 1], 'reserved', q)
  held[ARGV[2 + n + i]] = q
end
local rec = cjson.encode({state = 'RESERVED', held = held})
redis.call('SET', KEYS[1], rec)
return rec
"""

# KEYS: reservation, product hashes of what it holds. ARGV: retain, the record read
# before (or ''), new state, the product field the held stock moves to, quantities...
_FINISH = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  if ARGV[3] == 'SOLD' then return cjson.encode({state = 'REJECTED', reason = 'no reservation'}) end
  local rec = cjson.encode({state = 'RELEASED', reason = 'released first'})
  redis.call('SET', KEYS[1], rec, 'EX', ARGV[1])
  return rec
end
if cur ~= ARGV[2] then return cur end
if cjson.decode(cur).state ~= 'RESERVED' then return cur end
for i = 2, #KEYS do
  local q = tonumber(ARGV[3 + i])
  redis.call('HINCRBY', KEYS[i], 'reserved', -q)
  redis.call('HINCRBY', KEYS[i], ARGV[4], q)
end
local rec = cjson.encode({state = ARGV[3]})
redis.call('SET', KEYS[1], rec, 'EX', ARGV[1])
return rec
"""


@redis_outage_is_unavailable
class RedisInventoryStore:
    """Redis store. Every key shares the hash tag ``{<prefix>:inv}``, so each script
    touches one Redis Cluster slot and runs atomically."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.tag = f"{{{prefix}:inv}}"
        self._reserve = redis.register_script(_RESERVE)
        self._finish_script = redis.register_script(_FINISH)

    def _pkey(self, sku: str) -> str:
        return f"{self.tag}:p:{sku}"

    def _rkey(self, order_id: str) -> str:
        return f"{self.tag}:r:{order_id}"

    async def put(self, sku: str, name: str, price: int, available: int) -> Product:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._pkey(sku), mapping={"name": name, "price": price, "available": available}
            )
            pipe.hsetnx(self._pkey(sku), "reserved", 0)
            pipe.hsetnx(self._pkey(sku), "sold", 0)
            pipe.sadd(f"{self.tag}:skus", sku)
            pipe.hgetall(self._pkey(sku))
            *_, row = await pipe.execute()
        return Product.model_validate({"sku": sku, **_decode(row)})

    async def add_if_missing(self, product: Product) -> None:
        fields: list[str | int] = ["price", product.price, "available", product.available,
                  "reserved", product.reserved, "sold", product.sold]  # fmt: skip
        if await self.redis.hsetnx(self._pkey(product.sku), "name", product.name):
            await self.redis.hset(self._pkey(product.sku), items=fields)
            await self.redis.sadd(f"{self.tag}:skus", product.sku)

    async def get(self, sku: str) -> Product | None:
        row = await self.redis.hgetall(self._pkey(sku))
        return _product(sku, row)

    async def all(self) -> list[Product]:
        skus = sorted(_text(s) for s in await self.redis.smembers(f"{self.tag}:skus"))
        async with self.redis.pipeline(transaction=False) as pipe:
            for sku in skus:
                pipe.hgetall(self._pkey(sku))
            rows = await pipe.execute()
        return [p for sku, row in zip(skus, rows, strict=True) if (p := _product(sku, row))]

    async def reserve(self, order_id: str, items: Sequence[Item]) -> Reservation:
        wanted = merge(items)
        keys = [self._rkey(order_id), *(self._pkey(s) for s in wanted)]
        args: list[str | int] = [RETAIN, len(wanted), *wanted.values(), *wanted]
        raw = await self._reserve(keys=keys, args=args)
        return _reservation(order_id, raw)

    async def _finish(self, order_id: str, state: str, field: str) -> tuple[Reservation, list[str]]:
        for _ in range(3):  # the record only moves forward, so this settles at once
            before = await self.redis.get(self._rkey(order_id))
            held: dict[str, int] = json.loads(before).get("held", {}) if before else {}
            keys = [self._rkey(order_id), *(self._pkey(s) for s in held)]
            args = [RETAIN, before or "", state, field, *held.values()]
            raw = await self._finish_script(keys=keys, args=args)
            if not (before is None and json.loads(raw)["state"] == "RESERVED"):
                reservation = _reservation(order_id, raw)
                # the script moved the held stock only when it made this state out of `before`
                moved = reservation.state == state and reservation.reason is None and held
                return reservation, list(held) if moved else []
        raise RuntimeError(f"reservation {order_id} kept changing")

    async def release(self, order_id: str) -> tuple[Reservation, list[str]]:
        return await self._finish(order_id, "RELEASED", "available")

    async def sell(self, order_id: str) -> tuple[Reservation, list[str]]:
        return await self._finish(order_id, "SOLD", "sold")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(row: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in row.items()}


def _product(sku: str, row: Mapping[bytes | str, bytes | str]) -> Product | None:
    return Product.model_validate({"sku": sku, **_decode(row)}) if row else None


def _reservation(order_id: str, raw: bytes | str) -> Reservation:
    data = json.loads(raw)
    return Reservation(order_id=order_id, state=data["state"], reason=data.get("reason"))
