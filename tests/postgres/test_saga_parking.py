"""Durable timers, external events, deadlines and child sagas on a real PostgreSQL saga
store, in real time (the server's clock): parked sagas hold no task, and the store's
lease (released by a signal, or expiring at the wake-up time) is what resumes them."""

from __future__ import annotations

import asyncio
import collections
import time
from datetime import timedelta

import pytest
from pydantic import BaseModel

from nativekit.backends.postgres import Database, PostgresSagaStore
from nativekit.saga import Saga, SagaContext, SagaRecord, SagaRuntime, SagaStatus, StepStatus

pytestmark = pytest.mark.postgres


class Order(BaseModel):
    """Input."""

    order_id: str


def runtime_for(database: Database, *sagas: Saga[Order]) -> SagaRuntime:
    """A runtime on PostgreSQL with no background recovery and no local wake-ups, so only
    the store (a released or expired lease) and explicit ``recover()`` resume sagas."""
    runtime = SagaRuntime(
        "test",
        PostgresSagaStore(database),
        tracing=False,
        recovery_interval=3600,
        local_wake=False,
    )
    for saga in sagas:
        runtime.declare(saga)
    return runtime


async def parked(runtime: SagaRuntime, saga_id: str, step: str) -> SagaRecord:
    """Wait until the local run ended with ``step`` parked."""
    for _ in range(1000):
        record = await runtime.get(saga_id)
        if saga_id not in runtime.runs and record.steps.get(step) and record.steps[step].waiting:
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"saga {saga_id} did not park in {step}")


async def recovered(runtime: SagaRuntime, within: float) -> int:
    """Run recovery passes until one claims something (or ``within`` seconds passed)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        if claimed := await runtime.recover():
            return claimed
        await asyncio.sleep(0.05)
    return 0


async def test_an_event_wakes_a_parked_saga_and_its_timer_wakes_it_through_recovery(
    pg_database: Database,
) -> None:
    """wait_for parks with the lease until the timeout; the signal stores the payload once and
    resumes the saga; ctx.sleep parks it again until its time, when recovery claims it."""
    applied: collections.Counter[str] = collections.Counter()
    saga: Saga[Order] = Saga("reviewed", input=Order)

    @saga.step(readonly=True)
    async def review(ctx: SagaContext[Order]) -> bool:
        return bool(await ctx.wait_for("fraud-review", timeout=3600))

    @saga.step()
    async def charge(ctx: SagaContext[Order]) -> None:
        await ctx.sleep(timedelta(seconds=1))
        applied[ctx.idempotency_key] += 1

    runtime = runtime_for(pg_database, saga)
    await runtime.start(saga, {"order_id": "o-1"}, saga_id="s-1")
    record = await parked(runtime, "s-1", "review")
    assert record.awaiting == ["fraud-review"] and record.token
    assert record.lease_until is not None and record.lease_until > record.updated_at + 3000
    assert await runtime.recover() == 0  # parked on a live lease: nothing to recover
    assert await runtime.signal("s-1", "fraud-review", True) is True
    assert await runtime.signal("s-1", "fraud-review", False) is False  # applied once
    record = await parked(runtime, "s-1", "charge")
    assert record.steps["review"].status is StepStatus.COMPLETED
    assert record.results["review"] == "true"
    assert record.timers and record.lease_until is not None
    assert "s-1:charge:forward" not in applied
    assert await recovered(runtime, 10) == 1
    done = await runtime.wait("s-1", 10)
    assert done.status is SagaStatus.COMPLETED
    assert applied["s-1:charge:forward"] == 1


async def test_the_deadline_wakes_a_saga_parked_without_timeout_and_it_compensates(
    pg_database: Database,
) -> None:
    """The lease of a saga waiting for an event with no timeout runs out at its deadline;
    recovery claims it and it compensates."""
    applied: collections.Counter[str] = collections.Counter()
    saga: Saga[Order] = Saga("reviewed", input=Order)

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        applied[ctx.idempotency_key] += 1

    @reserve.compensate
    async def release(ctx: SagaContext[Order]) -> None:
        applied[ctx.idempotency_key] += 1

    @saga.step(readonly=True)
    async def review(ctx: SagaContext[Order]) -> bool:
        return bool(await ctx.wait_for("fraud-review"))

    runtime = runtime_for(pg_database, saga)
    started = time.time()
    await runtime.start(saga, {"order_id": "o-1"}, saga_id="s-1", deadline=1.0)
    record = await parked(runtime, "s-1", "review")
    seen = time.time()
    # The lease runs out at the deadline, never before it. It is a length counted from the
    # server's clock when the write runs, so it ends later by the time between the run
    # computing it and the write running (a loop turn, more under load): at most the
    # time since the start.
    assert record.deadline is not None and record.lease_until is not None
    assert record.deadline <= record.lease_until <= record.deadline + (seen - started)
    assert await recovered(runtime, 10) == 1
    done = await runtime.wait("s-1", 10)
    assert done.status is SagaStatus.COMPENSATED
    assert "deadline passed" in (done.error or "")
    assert applied["s-1:reserve:compensate"] == 1


async def test_a_parked_child_parks_the_parent_and_its_end_wakes_it(
    pg_database: Database,
) -> None:
    """A child waiting for an event parks, so does its parent; the child's event completes
    it and its end (a signal to the parent) resumes the parent, which completes."""
    child: Saga[Order] = Saga("approve", input=Order)

    @child.step(readonly=True)
    async def wait(ctx: SagaContext[Order]) -> bool:
        return bool(await ctx.wait_for("ok", timeout=3600))

    parent: Saga[Order] = Saga("outer", input=Order)

    @parent.child(child)
    async def approval(ctx: SagaContext[Order]) -> Order:
        return Order(order_id=ctx.data.order_id)

    runtime = runtime_for(pg_database, parent)
    await runtime.start(parent, {"order_id": "o-1"}, saga_id="p-1")
    record = await parked(runtime, "p-1", "approval")
    assert record.awaiting == ["child.approval"] and record.children == {"p-1:approval": "approval"}
    kid = await parked(runtime, "p-1:approval", "wait")
    assert kid.parent == "p-1"
    assert await runtime.signal("p-1:approval", "ok", True) is True
    done = await runtime.wait("p-1", 10)
    assert done.status is SagaStatus.COMPLETED
    assert done.results["approval"] == '{"wait":true}'
    assert (await runtime.get("p-1:approval")).status is SagaStatus.COMPLETED
