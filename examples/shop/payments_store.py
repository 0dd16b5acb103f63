"""Payment storage: a memory reference and Redis. A payment id is derived from the
charge's idempotency key, so a charge is captured at most once per key, and a refund
that arrives before its charge voids the key (the late charge is then refused)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from examples.shop.models import Payment
from examples.shop.unavailable import redis_outage_is_unavailable

if TYPE_CHECKING:
    import redis.asyncio as aioredis


class PaymentStore(Protocol):
    """Payments by id."""

    async def add_if_missing(self, payment: Payment) -> Payment: ...
    async def refund(self, payment_id: str, order_id: str) -> tuple[Payment, bool]: ...
    async def first_attempt(self, payment_id: str) -> bool: ...
    async def get(self, payment_id: str) -> Payment | None: ...
    async def all(self) -> list[Payment]: ...
    async def of_order(self, order_id: str) -> list[Payment]: ...


class MemoryPaymentStore:
    """In-process store (each method is atomic: it never awaits)."""

    def __init__(self) -> None:
        self.payments: dict[str, Payment] = {}
        self.attempts: dict[str, int] = {}

    async def add_if_missing(self, payment: Payment) -> Payment:
        return self.payments.setdefault(payment.payment_id, payment)

    async def refund(self, payment_id: str, order_id: str) -> tuple[Payment, bool]:
        current = self.payments.get(payment_id)
        if current is None:
            current = Payment(payment_id=payment_id, order_id=order_id, amount=0, status="VOIDED")
        elif current.status != "CAPTURED":
            return current, False
        else:
            current = current.model_copy(update={"status": "REFUNDED"})
        self.payments[payment_id] = current
        return current, current.status == "REFUNDED"

    async def first_attempt(self, payment_id: str) -> bool:
        self.attempts[payment_id] = self.attempts.get(payment_id, 0) + 1
        return self.attempts[payment_id] == 1

    async def get(self, payment_id: str) -> Payment | None:
        return self.payments.get(payment_id)

    async def all(self) -> list[Payment]:
        return list(self.payments.values())

    async def of_order(self, order_id: str) -> list[Payment]:
        return [p for p in self.payments.values() if p.order_id == order_id]


_ADD = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[2])
return ARGV[1]
"""

# Returns the record and 1 when this call refunded it.
_REFUND = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[2])
  redis.call('SADD', KEYS[3], ARGV[2])
  return {ARGV[1], 0}
end
local rec = cjson.decode(cur)
if rec.status ~= 'CAPTURED' then return {cur, 0} end
rec.status = 'REFUNDED'
cur = cjson.encode(rec)
redis.call('SET', KEYS[1], cur)
return {cur, 1}
"""


@redis_outage_is_unavailable
class RedisPaymentStore:
    """Redis store; all keys share the hash tag ``{<prefix>:pay}`` (one Cluster slot)."""

    def __init__(self, redis: aioredis.Redis, prefix: str) -> None:
        self.redis = redis
        self.tag = f"{{{prefix}:pay}}"
        self._add = redis.register_script(_ADD)
        self._refund = redis.register_script(_REFUND)

    def _keys(self, payment_id: str, order_id: str = "") -> list[str]:
        return [f"{self.tag}:p:{payment_id}", f"{self.tag}:all", f"{self.tag}:o:{order_id}"]

    async def add_if_missing(self, payment: Payment) -> Payment:
        raw = await self._add(
            keys=self._keys(payment.payment_id, payment.order_id),
            args=[payment.model_dump_json(), payment.payment_id],
        )
        return Payment.model_validate_json(raw)

    async def refund(self, payment_id: str, order_id: str) -> tuple[Payment, bool]:
        void = Payment(payment_id=payment_id, order_id=order_id, amount=0, status="VOIDED")
        raw, refunded = await self._refund(
            keys=self._keys(payment_id, order_id), args=[void.model_dump_json(), payment_id]
        )
        return Payment.model_validate_json(raw), bool(refunded)

    async def first_attempt(self, payment_id: str) -> bool:
        key = f"{self.tag}:attempts:{payment_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 24 * 3600)
            count, _ = await pipe.execute()
        return int(count) == 1

    async def get(self, payment_id: str) -> Payment | None:
        raw = await self.redis.get(self._keys(payment_id)[0])
        return None if raw is None else Payment.model_validate_json(raw)

    async def all(self) -> list[Payment]:
        return await self._load(f"{self.tag}:all")

    async def of_order(self, order_id: str) -> list[Payment]:
        return await self._load(self._keys("", order_id)[2])

    async def _load(self, index: str) -> list[Payment]:
        ids = [i.decode() if isinstance(i, bytes) else i for i in await self.redis.smembers(index)]
        raws = await self.redis.mget([self._keys(i)[0] for i in ids]) if ids else []
        return [Payment.model_validate_json(r) for r in raws if r is not None]
