"""A saga with every new kind of step, as a worker process of the SIGKILL test.

validate → [reserve, charge] in parallel → pay (a child saga: capture) → review
(waits for the "approve" event) → ship (sleeps durably first). Every tenth saga
has a deadline short enough to pass mid-run. Run as a script it starts sagas
``model-0 .. model-N-1`` (ids that exist are not started again), signals
"approve" to each (a repeat is ignored, a finished saga refuses it), recovers
crashed ones, prints ``READY`` and ``DONE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from typing import Any

from ledger_saga import Ledger
from pydantic import BaseModel

import nativekit
from nativekit.saga import Saga, SagaContext, SagaStateError

#: Steps whose forward effect and compensation go to the ledger.
EFFECTS = ("reserve", "charge", "ship")


class Job(BaseModel):
    """Input: which step (if any) refuses."""

    n: int
    fail_at: str | None = None


def fail_at(n: int) -> str | None:
    """Deterministic failures: a quarter fail at charge (in the group), a quarter at ship."""
    return {1: "charge", 2: "ship"}.get(n % 4)


def build_saga(svc: nativekit.Service, ledger: Ledger, *, delay: float = 0.02) -> Saga[Job]:
    """The saga described above, on ``svc``."""
    saga: Saga[Job] = svc.saga("modelled", input=Job)

    @saga.step(readonly=True)
    async def validate(ctx: SagaContext[Job]) -> int:
        return ctx.data.n

    def action(name: str) -> Any:
        async def run(ctx: SagaContext[Job]) -> None:
            await asyncio.sleep(random.uniform(0, delay))
            if name == "ship":
                await ctx.sleep(random.uniform(0, 0.1))
            if ctx.data.fail_at == name:
                raise PermissionError(f"{name} refused")
            await ledger.apply(ctx.idempotency_key)
            await asyncio.sleep(random.uniform(0, delay))

        return run

    def undo(name: str) -> Any:
        async def run(ctx: SagaContext[Job]) -> None:
            await asyncio.sleep(random.uniform(0, delay))
            await ledger.apply(ctx.idempotency_key)

        return run

    group = saga.parallel("hold", on_failure="cancel")
    for name in ("reserve", "charge"):
        group.step(name=name, no_retry=(PermissionError,))(action(name)).compensate(undo(name))

    child: Saga[Job] = Saga("modelled-payment", input=Job)
    child.step(name="capture", no_retry=(PermissionError,))(action("capture")).compensate(
        undo("capture")
    )
    svc.add_saga(child)

    @saga.child(child)
    async def pay(ctx: SagaContext[Job]) -> Job:
        return ctx.data

    @saga.step(readonly=True)
    async def review(ctx: SagaContext[Job]) -> bool:
        approved: bool = (await ctx.wait_for("approve", timeout=30))["ok"]
        return approved

    saga.step(name="ship", no_retry=(PermissionError,))(action("ship")).compensate(undo("ship"))
    return saga


async def approve(svc: nativekit.Service, saga_id: str) -> None:
    """Deliver the event (again): a repeat is ignored, a finished saga refuses it."""
    with contextlib.suppress(SagaStateError):
        await svc.sagas.signal(saga_id, "approve", {"ok": True})


async def work(redis_url: str, prefix: str, count: int) -> None:
    """Start every saga not started yet, signal them, recover others, wait until all ended."""
    svc = nativekit.Service(
        "model-worker",
        settings=nativekit.Settings(
            redis={"url": redis_url},
            saga={
                "key_prefix": prefix,
                "shards": 4,
                "lease_seconds": 0.6,
                "recovery_interval_seconds": 0.05,
                "max_interruptions": 20,
            },
            telemetry={"log_level": "ERROR"},
        ),
    )
    saga = build_saga(svc, Ledger(svc.redis, prefix))
    await svc.startup(hook_sigterm=False)
    print("READY", flush=True)
    gate = asyncio.Semaphore(10)

    async def one(n: int) -> None:
        saga_id = f"model-{n}"
        async with gate:
            deadline = 0.15 if n % 10 == 9 else None
            job = Job(n=n, fail_at=fail_at(n))
            await svc.sagas.start(saga, job, saga_id=saga_id, deadline=deadline)
            await asyncio.sleep(random.uniform(0, 0.05))
            await approve(svc, saga_id)
            await svc.sagas.wait(saga_id, 60)

    await asyncio.gather(*(one(n) for n in range(count)))
    print("DONE", flush=True)
    await svc.shutdown()


if __name__ == "__main__":
    asyncio.run(work(sys.argv[1], sys.argv[2], int(sys.argv[3])))
