"""A new user's saga through deploys that SIGKILL it: ``reserve`` and ``charge`` with
compensations, a final ``confirm`` without one (a pivot), every step with default options.

Run as a script it is a worker process: it starts sagas ``deploy-0 .. deploy-N-1``
(ids that exist are not started again), recovers crashed ones, prints ``READY`` once
started and ``DONE`` when every saga has ended.
"""

from __future__ import annotations

import asyncio
import random
import sys

from ledger_saga import Ledger, run_all
from pydantic import BaseModel

import nativekit
from nativekit.saga import Saga, SagaContext

STEPS = ("reserve", "charge", "confirm")


class Order(BaseModel):
    """Input: the order number."""

    n: int


def refused(n: int) -> bool:
    """One order in ten is refused by the payment participant (a business failure)."""
    return n % 10 == 3


def build_saga(svc: nativekit.Service, ledger: Ledger) -> Saga[Order]:
    """The three steps, each a ledgered participant call of up to 50 ms."""
    saga: Saga[Order] = svc.saga("deploy", input=Order)

    async def call(ctx: SagaContext[Order]) -> None:
        await asyncio.sleep(random.uniform(0, 0.025))
        await ledger.apply(ctx.idempotency_key)
        await asyncio.sleep(random.uniform(0, 0.025))

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        await call(ctx)

    @reserve.compensate
    async def release(ctx: SagaContext[Order]) -> None:
        await call(ctx)

    @saga.step()
    async def charge(ctx: SagaContext[Order]) -> None:
        if refused(ctx.data.n):
            raise PermissionError("card declined")
        await call(ctx)

    @charge.compensate
    async def refund(ctx: SagaContext[Order]) -> None:
        await call(ctx)

    @saga.step()
    async def confirm(ctx: SagaContext[Order]) -> None:
        await call(ctx)

    return saga


async def work(redis_url: str, prefix: str, count: int) -> None:
    """Start every saga that does not exist yet, recover others, wait until all ended."""
    svc = nativekit.Service(
        "deploy-worker",
        settings=nativekit.Settings(
            redis={"url": redis_url},
            saga={
                "key_prefix": prefix,
                "shards": 4,
                "lease_seconds": 2.0,
                "recovery_interval_seconds": 0.1,
            },
            telemetry={"log_level": "ERROR"},
        ),
    )
    saga = build_saga(svc, Ledger(svc.redis, prefix))
    await run_all(svc, saga, [(f"deploy-{n}", Order(n=n)) for n in range(count)], concurrency=20)


if __name__ == "__main__":
    asyncio.run(work(sys.argv[1], sys.argv[2], int(sys.argv[3])))
