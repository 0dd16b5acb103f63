"""A saga with a step (or compensation) that SIGKILLs its own process every time it runs.

Run as a script: ``suicidal_saga.py REDIS_URL PREFIX MODE`` starts (or recovers) the
saga ``boom`` and prints ``DONE <status>`` once it ended, unless its step kills the
process first. MODE ``forward``: the compensated step ``boom`` kills; ``pivot``: the
same step without a compensation; ``compensation``: the compensation of ``reserve``
kills once the saga rolls back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from ledger_saga import Ledger

import nativekit
from nativekit.saga import Saga, SagaContext

#: ``NATIVEKIT_SAGA_MAX_INTERRUPTIONS`` of the worker.
MAX_INTERRUPTIONS = 2


def build_saga(svc: nativekit.Service, ledger: Ledger, mode: str) -> Saga[dict[str, str]]:
    """reserve (compensated) then boom; what kills the process depends on ``mode``."""
    saga: Saga[dict[str, str]] = svc.saga("suicidal", input=dict[str, str])

    async def die(ctx: SagaContext[dict[str, str]]) -> None:
        await ledger.apply(f"{ctx.idempotency_key}:{ctx.attempt}")
        os.kill(os.getpid(), signal.SIGKILL)

    @saga.step()
    async def reserve(ctx: SagaContext[dict[str, str]]) -> None:
        await ledger.apply(ctx.idempotency_key)

    @reserve.compensate
    async def release(ctx: SagaContext[dict[str, str]]) -> None:
        if mode == "compensation":
            await die(ctx)
        await ledger.apply(ctx.idempotency_key)

    @saga.step(no_retry=(PermissionError,))
    async def boom(ctx: SagaContext[dict[str, str]]) -> None:
        if mode == "compensation":
            raise PermissionError("refused")
        await die(ctx)

    if mode == "forward":

        @boom.compensate
        async def unboom(ctx: SagaContext[dict[str, str]]) -> None:
            await ledger.apply(ctx.idempotency_key)

    return saga


async def work(redis_url: str, prefix: str, mode: str) -> None:
    """Start ``boom`` unless it exists, recover it, print ``DONE <status>`` when it ends."""
    svc = nativekit.Service(
        "suicidal-worker",
        settings=nativekit.Settings(
            redis={"url": redis_url},
            saga={
                "key_prefix": prefix,
                "shards": 2,
                "lease_seconds": 0.3,
                "recovery_interval_seconds": 0.05,
                "max_interruptions": MAX_INTERRUPTIONS,
            },
            telemetry={"log_level": "ERROR"},
        ),
    )
    saga = build_saga(svc, Ledger(svc.redis, prefix), mode)
    await svc.startup(hook_sigterm=False)
    handle = await svc.sagas.start(saga, {"mode": mode}, saga_id="boom")
    record = await handle.wait(30)
    print(f"DONE {record.status.value}", flush=True)
    await svc.shutdown()


if __name__ == "__main__":
    asyncio.run(work(sys.argv[1], sys.argv[2], sys.argv[3]))
