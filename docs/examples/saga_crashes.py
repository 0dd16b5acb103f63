"""A saga with default step options, crashed at every point: none ends FAILED."""

from __future__ import annotations

from pydantic import BaseModel

from nativekit.saga import Saga, SagaContext
from nativekit.testing import CrashMatrixReport, crash_matrix


class PlaceOrder(BaseModel):
    order_id: str


#: The participants' side: effects applied, by idempotency key (each applied once).
applied: dict[str, int] = {}


def apply(key: str) -> None:
    applied.setdefault(key, 1)


place_order: Saga[PlaceOrder] = Saga("place-order", input=PlaceOrder)


@place_order.step()  # default policy: 3 retries with backoff; crashes are re-run
async def reserve(ctx: SagaContext[PlaceOrder]) -> None:
    apply(ctx.idempotency_key)


@reserve.compensate
async def release(ctx: SagaContext[PlaceOrder]) -> None:
    apply(ctx.idempotency_key)


@place_order.step()
async def charge(ctx: SagaContext[PlaceOrder]) -> None:
    apply(ctx.idempotency_key)


@charge.compensate
async def refund(ctx: SagaContext[PlaceOrder]) -> None:
    apply(ctx.idempotency_key)


@place_order.step(max_interruptions=5)  # a pivot (no compensation), more crash re-runs
async def confirm(ctx: SagaContext[PlaceOrder]) -> None:
    apply(ctx.idempotency_key)


async def main() -> CrashMatrixReport:
    """Crash the saga before and after every step; each run must end COMPLETED, effects once."""
    return await crash_matrix(
        place_order, {"order_id": "1"}, ledger=lambda: dict(applied), fail_steps=False
    )
