"""A three-service saga used by the command/reply tests: orders orchestrates, inventory and
payments participate. Effects are counted in a ledger (a dict, or a Redis hash)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

import nativekit
from nativekit import CommandRejected, SagaContext
from nativekit.saga import outbox_publish


class PlaceOrder(BaseModel):
    order_id: str
    sku: str = "mug"
    qty: int = 1
    amount_cents: int = 990
    behaviour: str = "ok"  # ok | reject | slow


class ReserveStock(BaseModel):
    order_id: str
    sku: str
    qty: int


class StockReserved(BaseModel):
    reservation_id: str


class ReleaseStock(BaseModel):
    order_id: str


class StockReleased(BaseModel):
    released: bool


class ChargeCard(BaseModel):
    order_id: str
    amount_cents: int
    behaviour: str


class CardCharged(BaseModel):
    charge_id: str


class RefundCard(BaseModel):
    order_id: str


class CardRefunded(BaseModel):
    refunded: bool


class OrderConfirmed(BaseModel):
    order_id: str


Ledger = Callable[[str], Awaitable[None]]


def topics(prefix: str) -> dict[str, str]:
    """Topic names under a unique prefix."""
    return {
        "inventory": f"{prefix}.inventory.commands",
        "payments": f"{prefix}.payments.commands",
        "events": f"{prefix}.orders.events",
        "replies": f"{prefix}.orders.replies",
    }


def orders_service(
    settings: nativekit.Settings,
    names: dict[str, str],
    *,
    timeout: float = 5.0,
    parallel: bool = False,
) -> nativekit.Service:
    """The orchestrator: validate (local), reserve_stock and charge_card (commands).

    ``parallel``: reserve_stock and charge_card are members of one parallel group, with a
    local member ``note`` (both commands in flight at once).
    """
    svc = nativekit.Service("orders", settings=settings)
    place_order = svc.saga("place-order", input=PlaceOrder)
    owner: Any = place_order.parallel("reserve-and-charge") if parallel else place_order

    @place_order.step(readonly=True)
    async def validate(ctx: SagaContext[PlaceOrder]) -> int:
        if ctx.data.qty < 1:
            raise ValueError("qty must be positive")
        return ctx.data.qty

    @owner.command_step(
        topic=names["inventory"], reply=StockReserved, reply_timeout=timeout, retries=2
    )
    async def reserve_stock(ctx: SagaContext[PlaceOrder]) -> ReserveStock:
        return ReserveStock(order_id=ctx.data.order_id, sku=ctx.data.sku, qty=ctx.data.qty)

    @reserve_stock.compensate_command(topic=names["inventory"], reply=StockReleased)
    async def release_stock(ctx: SagaContext[PlaceOrder]) -> ReleaseStock:
        return ReleaseStock(order_id=ctx.data.order_id)

    @owner.command_step(
        topic=names["payments"], reply=CardCharged, reply_timeout=timeout, retries=0
    )
    async def charge_card(ctx: SagaContext[PlaceOrder]) -> ChargeCard:
        return ChargeCard(
            order_id=ctx.data.order_id,
            amount_cents=ctx.data.amount_cents,
            behaviour=ctx.data.behaviour,
        )

    @charge_card.compensate_command(topic=names["payments"], reply=CardRefunded)
    async def refund_card(ctx: SagaContext[PlaceOrder]) -> RefundCard:
        return RefundCard(order_id=ctx.data.order_id)

    if parallel:

        @owner.step()
        async def note(ctx: SagaContext[PlaceOrder]) -> str:
            return f"noted {ctx.data.order_id}"

        @note.compensate  # a local member with nothing to undo (else it would be a pivot)
        async def unnote(ctx: SagaContext[PlaceOrder]) -> None:
            return None

    @place_order.step()
    async def confirm(ctx: SagaContext[PlaceOrder]) -> str:
        outbox_publish(ctx, names["events"], OrderConfirmed(order_id=ctx.data.order_id))
        return ctx.results["charge_card"].charge_id  # type: ignore[no-any-return]

    svc.__dict__["place_order"] = place_order
    return svc


def inventory_service(
    settings: nativekit.Settings, names: dict[str, str], ledger: Ledger, *, delay: float = 0.0
) -> nativekit.Service:
    """Participant: reserves and releases stock, counting each effect in the ledger."""
    svc = nativekit.Service("inventory", settings=settings)

    @svc.command_handler(names["inventory"])
    async def on_reserve(cmd: ReserveStock) -> StockReserved:
        if delay:
            await _mark(ledger, f"{cmd.order_id}:reserve:entered")
            await asyncio.sleep(delay)
        if cmd.sku == "unknown":
            raise CommandRejected(f"no such sku {cmd.sku}")
        await ledger(f"{cmd.order_id}:reserve")
        return StockReserved(reservation_id=f"r-{cmd.order_id}")

    @svc.command_handler(names["inventory"])
    async def on_release(cmd: ReleaseStock) -> StockReleased:
        await ledger(f"{cmd.order_id}:release")
        return StockReleased(released=True)

    return svc


def payments_service(
    settings: nativekit.Settings, names: dict[str, str], ledger: Ledger, *, slow: float = 2.0
) -> nativekit.Service:
    """Participant: charges (rejects or answers slowly on request) and refunds."""
    svc = nativekit.Service("payments", settings=settings)

    @svc.command_handler(names["payments"])
    async def on_charge(cmd: ChargeCard) -> CardCharged:
        if cmd.behaviour == "reject":
            raise CommandRejected("card declined")
        if cmd.behaviour == "slow":
            await asyncio.sleep(slow)
        await ledger(f"{cmd.order_id}:charge")
        return CardCharged(charge_id=f"c-{cmd.order_id}")

    @svc.command_handler(names["payments"])
    async def on_refund(cmd: RefundCard) -> CardRefunded:
        await ledger(f"{cmd.order_id}:refund")
        return CardRefunded(refunded=True)

    return svc


async def _mark(ledger: Ledger, key: str) -> None:
    await ledger(key)


def memory_ledger() -> tuple[dict[str, int], Ledger]:
    """A dict ledger and the function that counts into it."""
    counts: dict[str, int] = {}

    async def count(key: str) -> None:
        counts[key] = counts.get(key, 0) + 1

    return counts, count


def redis_ledger(url: str, key: str) -> Ledger:
    """A ledger in a Redis hash (shared by processes)."""
    import redis.asyncio as aioredis

    from nativekit import Settings
    from nativekit.backends.redis import create_redis

    client = (
        create_redis(Settings(_env_file=None, redis={"url": url}))
        if "+cluster://" in url
        else aioredis.Redis.from_url(url)
    )

    async def count(field: str) -> None:
        await client.hincrby(key, field, 1)

    return count


def env(name: str, default: Any = None) -> Any:
    """A test process's parameter from the environment."""
    return os.environ.get(name, default)
