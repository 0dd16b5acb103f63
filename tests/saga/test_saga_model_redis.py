"""Parallel groups, events, timers and deadlines on real Redis, across two replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest
from pydantic import BaseModel

import nativekit
from nativekit.saga import Saga, SagaContext, SagaStateError, SagaStatus

pytestmark = pytest.mark.redis


class Order(BaseModel):
    """Input."""

    order_id: str


def define(svc: nativekit.Service, barrier: asyncio.Barrier | None = None) -> Saga[Order]:
    """[stock, payment] in parallel → review (event) → nap (timer)."""
    saga = svc.saga("modelled", input=Order, deadline=timedelta(minutes=5))
    group = saga.parallel("hold")
    for name in ("stock", "payment"):

        async def hold(ctx: SagaContext[Order]) -> str:
            if barrier is not None:
                await barrier.wait()
            return ctx.step

        async def release(ctx: SagaContext[Order]) -> None: ...

        group.step(name=name)(hold).compensate(release)

    @saga.step(readonly=True)
    async def review(ctx: SagaContext[Order]) -> str:
        verdict = await ctx.wait_for("review", timeout=60)
        return str(verdict["by"])

    @saga.step(readonly=True)
    async def nap(ctx: SagaContext[Order]) -> str:
        await ctx.sleep(0.3)
        return "rested"

    return saga


async def test_a_saga_parked_on_one_replica_is_resumed_by_a_signal_on_another(
    make_service: Callable[..., nativekit.Service],
) -> None:
    """Replica A runs the group (concurrently) and parks on the event; replica B signals it
    and resumes it; the timer then wakes it; a repeat and a late signal are refused."""
    a, b = make_service("a"), make_service("b")
    define(a, asyncio.Barrier(2))
    define(b)
    await a.startup(hook_sigterm=False)
    await b.startup(hook_sigterm=False)
    try:
        await a.sagas.start("modelled", {"order_id": "o-1"}, saga_id="m-1")
        async with asyncio.timeout(10):
            while not (await a.sagas.get("m-1")).awaiting:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert "m-1" not in a.sagas.runs
        record = await a.sagas.get("m-1")
        assert record.steps["review"].waiting and record.deadline is not None
        assert await b.sagas.signal("m-1", "review", {"by": "ann"}) is True
        assert await b.sagas.signal("m-1", "review", {"by": "bob"}) is False
        done = await b.sagas.wait("m-1", 10)
        assert done.status is SagaStatus.COMPLETED
        assert done.results["review"] == '"ann"' and done.results["nap"] == '"rested"'
        assert set(done.results) == {"stock", "payment", "review", "nap"}
        with pytest.raises(SagaStateError, match="COMPLETED and takes no more events"):
            await a.sagas.signal("m-1", "review", {"by": "eve"})
    finally:
        await a.shutdown()
        await b.shutdown()


async def test_the_deadline_of_a_parked_saga_is_enforced_by_recovery(
    make_service: Callable[..., nativekit.Service],
) -> None:
    """A saga parked with no signal coming compensates at its (per-start) deadline."""
    svc = make_service()
    saga = define(svc)
    undone: list[str] = []
    for name in ("stock", "payment"):
        step = saga.get_step(name)
        assert step is not None

        async def unhold(ctx: SagaContext[Order]) -> None:
            undone.append(ctx.idempotency_key)

        step.compensation = unhold

    await svc.startup(hook_sigterm=False)
    try:
        handle = await svc.sagas.start(saga, {"order_id": "o-1"}, saga_id="m-2", deadline=0.5)
        done = await handle.wait(10)
        assert done.status is SagaStatus.COMPENSATED
        assert "deadline passed" in (done.error or "")
        assert sorted(undone) == ["m-2:payment:compensate", "m-2:stock:compensate"]
    finally:
        await svc.shutdown()


async def test_a_group_and_a_child_saga_cost_five_round_trips(
    make_service: Callable[..., nativekit.Service],
) -> None:
    """The saga model's benchmark saga (three no-op members, then a child of one step)
    sends 5 commands to Redis per instance, the plain 3-step saga 4 (docs/saga-model.md,
    "What each kind of step costs")."""
    svc = make_service("counted", saga_recovery_interval=3600)  # no recovery passes between
    child: Saga[Order] = Saga("counted-child", input=Order)

    async def noop(ctx: SagaContext[Order]) -> None:
        return None

    child.step(name="pay")(noop).compensate(noop)
    svc.add_saga(child)
    model = svc.saga("counted-model", input=Order)
    group = model.parallel("fan")
    plain = svc.saga("counted-plain", input=Order)
    for name in ("reserve", "charge", "ship"):
        group.step(name=name)(noop).compensate(noop)
        plain.step(name=name)(noop).compensate(noop)

    @model.child(child)
    async def payment(ctx: SagaContext[Order]) -> Order:
        return ctx.data

    sent: list[tuple[str, str]] = []
    original = svc.redis.execute_command

    async def counted(*args: object, **kwargs: object) -> object:
        sent.append((str(args[0]), " ".join(map(str, args[1:]))))
        return await original(*args, **kwargs)

    await svc.startup(hook_sigterm=False)
    svc.redis.execute_command = counted  # type: ignore[method-assign]
    try:
        costs = {}
        for saga in ("counted-model", "counted-plain"):
            for n in range(2):  # the first run of each may load its scripts
                sent.clear()
                handle = await svc.sagas.start(saga, {"order_id": "o"}, saga_id=f"{saga}-{n}")
                record = await handle.wait(10)
                assert record.status is SagaStatus.COMPLETED, record.error
            # the saga's own commands (its child's id starts with its id)
            costs[saga] = [name for name, args in sent if f"{saga}-1" in args]
    finally:
        await svc.shutdown()
    assert costs == {"counted-model": ["EVALSHA"] * 5, "counted-plain": ["EVALSHA"] * 4}
