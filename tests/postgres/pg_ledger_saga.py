"""A saga whose steps write their effect in the step's transaction (``ctx.db``): the worker
process of the PostgreSQL SIGKILL test.

The effect table has no unique key and the steps no idempotency check of their own:
an effect recorded twice can only come from a step whose write committed without its
completion (or the reverse). Every call is also logged, outside the transaction, so
the test can tell that steps were re-run after kills.

    python pg_ledger_saga.py DATABASE_URL SCHEMA COUNT
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import asyncpg
from pydantic import BaseModel

import nativekit
from nativekit.saga import Saga, SagaContext

STEPS = ("reserve", "charge", "ship")


class Job(BaseModel):
    """Input: which step (if any) refuses."""

    n: int
    fail_at: str | None = None


def fail_at(n: int) -> str | None:
    """Deterministic failures: a quarter fail at charge, a quarter at ship."""
    return {1: "charge", 2: "ship"}.get(n % 4)


BUSINESS = """
CREATE TABLE IF NOT EXISTS {schema}.effects (key text NOT NULL, at timestamptz DEFAULT now());
CREATE TABLE IF NOT EXISTS {schema}.calls (key text NOT NULL);
"""


def build_saga(svc: nativekit.Service, calls: asyncpg.Pool, schema: str) -> Saga[Job]:
    """Three compensated steps that record their effect in ``ctx.db``."""
    saga: Saga[Job] = svc.saga("pg-ledgered", input=Job)

    async def effect(ctx: SagaContext[Job]) -> None:
        await calls.execute(f"INSERT INTO {schema}.calls (key) VALUES ($1)", ctx.idempotency_key)
        await asyncio.sleep(random.uniform(0, 0.02))
        if ctx.direction == "forward" and ctx.data.fail_at == ctx.step:
            raise PermissionError(f"{ctx.step} refused")
        await ctx.db.execute(
            f"INSERT INTO {schema}.effects (key) VALUES ($1)", ctx.idempotency_key
        )
        await asyncio.sleep(random.uniform(0, 0.02))  # killed here: the insert is rolled back

    def action(name: str) -> Any:
        async def run(ctx: SagaContext[Job]) -> None:
            await effect(ctx)

        run.__name__ = name
        return run

    for name in STEPS:
        saga.step(no_retry=(PermissionError,))(action(name)).compensate(effect)
    return saga


async def work(url: str, schema: str, count: int) -> None:
    """Start every saga not started yet, recover the others, wait until all ended."""
    svc = nativekit.Service(
        "pg-crash-worker",
        settings=nativekit.Settings(
            database={"url": url, "schema_name": schema, "migrate_on_start": True},
            saga={
                "lease_seconds": 0.6,
                "recovery_interval_seconds": 0.05,
                "max_interruptions": 20,  # a dozen kills within seconds, see ledger_saga.py
            },
            telemetry={"log_level": "ERROR"},
        ),
    )
    calls = await asyncpg.create_pool(url, min_size=1, max_size=4)
    await calls.execute(BUSINESS.format(schema=schema))
    saga = build_saga(svc, calls, schema)
    await svc.startup(hook_sigterm=False)
    print("READY", flush=True)
    gate = asyncio.Semaphore(10)

    async def one(n: int) -> None:
        async with gate:
            handle = await svc.sagas.start(saga, Job(n=n, fail_at=fail_at(n)), saga_id=f"pg-{n}")
            await handle.wait(60)

    await asyncio.gather(*(one(n) for n in range(count)))
    print("DONE", flush=True)
    await svc.shutdown()
    await calls.close()


if __name__ == "__main__":
    asyncio.run(work(sys.argv[1], sys.argv[2], int(sys.argv[3])))
