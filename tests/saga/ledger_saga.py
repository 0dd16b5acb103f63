"""A saga whose participants record every effect in a Redis ledger (crash and fencing tests).

Run as a script it is a worker process: it starts sagas ``crash-0 .. crash-N-1``
(ids that exist are not started again), recovers crashed ones, prints ``READY``
once started and ``DONE`` when every saga has ended.
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

import nativekit
from nativekit.saga import Saga, SagaContext

STEPS = ("reserve", "charge", "ship")
# Apply an effect once per idempotency key and log it; count every call.
APPLY = """
redis.call('RPUSH', KEYS[3], ARGV[1])
if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


class Job(BaseModel):
    """Input: which step (if any) refuses."""

    n: int
    fail_at: str | None = None


def fail_at(n: int) -> str | None:
    """Deterministic failures: a quarter fail at charge, a quarter at ship."""
    return {1: "charge", 2: "ship"}.get(n % 4)


class Ledger:
    """The participants' side: a Redis hash of applied keys, a log of effects and of calls."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = [
            f"{prefix}:ledger:applied",
            f"{prefix}:ledger:effects",
            f"{prefix}:ledger:calls",
        ]
        self.script = client.register_script(APPLY)

    async def apply(self, key: str) -> None:
        """Apply the effect for ``key`` once."""
        await self.script(keys=self.keys, args=[key])


def build_saga(svc: nativekit.Service, ledger: Ledger, *, delay: float = 0.02) -> Saga[Job]:
    """Three compensated steps calling the ledger, each taking up to ``delay`` seconds.

    Steps and compensations keep the default policy (a crash must never need
    ``retries=`` to end well); the refusal is declared ``no_retry``, as business
    refusals should be, so it compensates at once.
    """
    saga: Saga[Job] = svc.saga("ledgered", input=Job)

    def action(name: str) -> Any:
        async def run(ctx: SagaContext[Job]) -> None:
            await asyncio.sleep(random.uniform(0, delay))
            if ctx.data.fail_at == name:
                raise PermissionError(f"{name} refused")
            await ledger.apply(ctx.idempotency_key)
            await asyncio.sleep(random.uniform(0, delay))

        run.__name__ = name
        return run

    def undo(name: str) -> Any:
        async def run(ctx: SagaContext[Job]) -> None:
            await asyncio.sleep(random.uniform(0, delay))
            await ledger.apply(ctx.idempotency_key)

        return run

    for name in STEPS:
        saga.step(no_retry=(PermissionError,))(action(name)).compensate(undo(name))
    return saga


async def work(redis_url: str, prefix: str, count: int) -> None:
    """Start every saga that does not exist yet, recover others, wait until all ended."""
    svc = nativekit.Service(
        "crash-worker",
        settings=nativekit.Settings(
            redis={"url": redis_url},
            saga={
                "key_prefix": prefix,
                "shards": 4,
                "lease_seconds": 0.6,
                "recovery_interval_seconds": 0.05,
                # the test kills 20 workers within seconds, each may cut the same step short;
                # the default bound (3) is for kills minutes apart, see test_saga_deploy.py
                "max_interruptions": 20,
            },
            telemetry={"log_level": "ERROR"},
        ),
    )
    saga = build_saga(svc, Ledger(svc.redis, prefix))
    await run_all(svc, saga, [(f"crash-{n}", Job(n=n, fail_at=fail_at(n))) for n in range(count)])


async def run_all(
    svc: nativekit.Service,
    saga: Saga[Any],
    sagas: list[tuple[str, BaseModel]],
    *,
    concurrency: int = 10,
) -> None:
    """Start ``svc`` (``READY``), start each (id, input) not started yet, wait until every
    saga ended (``DONE``), stop."""
    await svc.startup(hook_sigterm=False)
    print("READY", flush=True)
    gate = asyncio.Semaphore(concurrency)

    async def one(saga_id: str, data: BaseModel) -> None:
        async with gate:
            handle = await svc.sagas.start(saga, data, saga_id=saga_id)
            await handle.wait(60)

    await asyncio.gather(*(one(saga_id, data) for saga_id, data in sagas))
    print("DONE", flush=True)
    await svc.shutdown()


if __name__ == "__main__":
    asyncio.run(work(sys.argv[1], sys.argv[2], int(sys.argv[3])))
