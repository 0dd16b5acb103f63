"""Durable timers (ctx.sleep), external events (ctx.wait_for + signal) and deadlines,
on the memory store with a manual clock: no task is held while a saga is parked."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import BaseModel
from saga_support import Participant

from nativekit.errors import ConfigError
from nativekit.saga import (
    MemorySagaStore,
    Saga,
    SagaContext,
    SagaRecord,
    SagaRuntime,
    SagaStateError,
    SagaStatus,
    StepStatus,
)
from nativekit.testing import ManualClock, crash_matrix


class Order(BaseModel):
    """Input."""

    order_id: str
    amount: int = 10


class Review(BaseModel):
    """The payload of the fraud-review event."""

    approved: bool
    by: str


def review_saga(participant: Participant, *, timeout: float | None = 3600) -> Saga[Order]:
    """reserve → review (waits for 'fraud-review') → charge; each compensated."""
    saga: Saga[Order] = Saga("reviewed", input=Order)

    @saga.step()
    async def reserve(ctx: SagaContext[Order]) -> None:
        participant.apply(ctx.idempotency_key)

    @reserve.compensate
    async def release(ctx: SagaContext[Order]) -> None:
        participant.apply(ctx.idempotency_key)

    @saga.step(retries=0, readonly=True)
    async def review(ctx: SagaContext[Order]) -> Review:
        participant.calls.append(f"{ctx.saga_id}:review:reached")
        verdict: Review = await ctx.wait_for("fraud-review", timeout=timeout, type=Review)
        if not verdict.approved:
            raise PermissionError(f"rejected by {verdict.by}")
        return verdict

    @saga.step()
    async def charge(ctx: SagaContext[Order]) -> None:
        await ctx.sleep(timedelta(minutes=5))
        participant.apply(ctx.idempotency_key)

    @charge.compensate
    async def refund(ctx: SagaContext[Order]) -> None:
        participant.apply(ctx.idempotency_key)

    return saga


def runtime_for(
    saga: Saga[Order], clock: ManualClock, *, local_wake: bool = False
) -> tuple[SagaRuntime, MemorySagaStore]:
    store = MemorySagaStore(clock=clock)
    runtime = SagaRuntime("test", store, tracing=False, clock=clock, local_wake=local_wake)
    runtime.declare(saga)
    return runtime, store


async def parked(runtime: SagaRuntime, saga_id: str, step: str | None = None) -> SagaRecord:
    """Wait until the local run ended with the saga parked (in ``step``, if given)."""
    for _ in range(500):
        record = await runtime.get(saga_id)
        waiting = {name for name, s in record.steps.items() if s.waiting}
        if saga_id not in runtime.runs and waiting and (step is None or step in waiting):
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"saga {saga_id} did not park")


async def test_an_event_wait_parks_without_a_task_and_a_signal_resumes_it() -> None:
    """wait_for parks (lease until the timeout, no run held); the signal's payload reaches the
    step; the timer in the next step parks again until its time; the saga completes."""
    clock = ManualClock()
    participant = Participant()
    runtime, _ = runtime_for(review_saga(participant), clock)
    await runtime.start("reviewed", {"order_id": "o-1"}, saga_id="s-1")
    record = await parked(runtime, "s-1")
    assert record.status is SagaStatus.RUNNING and record.awaiting == ["fraud-review"]
    assert record.steps["review"].waiting and record.lease_until == pytest.approx(clock() + 3600)
    assert await runtime.signal("s-1", "fraud-review", Review(approved=True, by="ann")) is True
    record = await parked(runtime, "s-1")  # now asleep in charge, 5 minutes
    assert record.steps["review"].status is StepStatus.COMPLETED
    assert record.results["review"] == '{"approved":true,"by":"ann"}'
    assert record.lease_until == pytest.approx(clock() + 300)
    assert "s-1:charge:forward" not in participant.applied
    assert await runtime.recover() == 0  # not due yet
    clock.advance(301)
    assert await runtime.recover() == 1
    done = await runtime.wait("s-1", 5)
    assert done.status is SagaStatus.COMPLETED
    assert participant.applied["s-1:charge:forward"] == 1
    # the step re-ran from its start once after the event: code before the wait runs again
    assert participant.calls.count("s-1:review:reached") == 2


async def test_an_event_is_applied_once_and_refused_once_the_saga_finished() -> None:
    """A second delivery returns False and keeps the first payload; a finished saga refuses."""
    clock = ManualClock()
    participant = Participant()
    runtime, _ = runtime_for(review_saga(participant), clock)
    await runtime.start("reviewed", {"order_id": "o-1"}, saga_id="s-1")
    await parked(runtime, "s-1")
    assert await runtime.signal("s-1", "fraud-review", {"approved": False, "by": "bob"})
    assert not await runtime.signal("s-1", "fraud-review", {"approved": True, "by": "eve"})
    done = await runtime.wait("s-1", 5)
    assert done.status is SagaStatus.COMPENSATED
    assert "rejected by bob" in (done.error or "")
    with pytest.raises(SagaStateError, match="is COMPENSATED and takes no more events"):
        await runtime.signal("s-1", "fraud-review", {"approved": True, "by": "eve"})
    with pytest.raises(ConfigError, match="Event name"):
        await runtime.signal("s-1", "no spaces", None)


async def test_an_event_delivered_before_the_wait_is_kept_for_it() -> None:
    """A signal that arrives while the saga is still in an earlier step is used by the wait."""
    clock = ManualClock()
    participant = Participant()
    saga = review_saga(participant)
    gate = asyncio.Event()
    reserve = saga.get_step("reserve")
    assert reserve is not None
    original = reserve.func

    async def slow_reserve(ctx: SagaContext[Order]) -> None:
        await gate.wait()
        await original(ctx)

    reserve.func = slow_reserve
    runtime, _ = runtime_for(saga, clock, local_wake=True)  # the replica resumes it at once
    await runtime.start("reviewed", {"order_id": "o-1"}, saga_id="s-1")
    assert await runtime.signal("s-1", "fraud-review", {"approved": True, "by": "ann"})
    gate.set()
    record = await parked(runtime, "s-1", "charge")  # past the review, asleep in charge
    assert record.steps["review"].status is StepStatus.COMPLETED
    assert record.results["review"] == '{"approved":true,"by":"ann"}'
    # the run had not seen the event: it parked, the write released the lease at once
    # (the event was stored) and this replica resumed it, re-running the step's start
    assert participant.calls.count("s-1:review:reached") == 2


async def test_an_event_wait_times_out_and_the_saga_compensates() -> None:
    """No event before the timeout: EventTimeout fails the step (no retry), undo reserve."""
    clock = ManualClock()
    participant = Participant()
    runtime, _ = runtime_for(review_saga(participant, timeout=60), clock)
    await runtime.start("reviewed", {"order_id": "o-1"}, saga_id="s-1")
    await parked(runtime, "s-1")
    clock.advance(61)
    assert await runtime.recover() == 1
    done = await runtime.wait("s-1", 5)
    assert done.status is SagaStatus.COMPENSATED
    assert "EventTimeout" in (done.steps["review"].error or "")
    assert participant.applied["s-1:reserve:compensate"] == 1


async def test_the_deadline_passes_while_parked_and_the_saga_compensates() -> None:
    """A saga parked on an event without timeout wakes at its deadline and compensates; the
    parked step (outcome unknown) is marked failed; an earlier deadline per start wins."""
    clock = ManualClock()
    participant = Participant()
    saga = review_saga(participant, timeout=None)
    saga.deadline = 3600.0
    runtime, _ = runtime_for(saga, clock)
    await runtime.start("reviewed", {"order_id": "o-1"}, saga_id="s-1", deadline=900)
    record = await parked(runtime, "s-1")
    assert record.deadline == pytest.approx(clock() + 900)
    assert record.lease_until == pytest.approx(clock() + 900)
    clock.advance(901)
    assert await runtime.recover() == 1
    done = await runtime.wait("s-1", 5)
    assert done.status is SagaStatus.COMPENSATED
    assert "deadline passed" in (done.error or "")
    assert done.steps["review"].status is StepStatus.FAILED
    assert participant.applied["s-1:reserve:compensate"] == 1


async def test_the_deadline_cuts_a_running_attempt_short() -> None:
    """A step still running at the deadline fails with DeadlinePassed (uncertain: compensated)."""
    participant = Participant()
    saga: Saga[Order] = Saga("slow", input=Order, deadline=timedelta(seconds=0.2))

    @saga.step(retries=5)
    async def hang(ctx: SagaContext[Order]) -> None:
        participant.apply(ctx.idempotency_key)
        await asyncio.sleep(3600)

    @hang.compensate
    async def undo(ctx: SagaContext[Order]) -> None:
        participant.apply(ctx.idempotency_key)

    runtime = SagaRuntime("test", MemorySagaStore(), tracing=False)
    runtime.declare(saga)
    handle = await runtime.start(saga, {"order_id": "o-1"})
    done = await handle.wait(5)
    assert done.status is SagaStatus.COMPENSATED
    assert "DeadlinePassed" in (done.steps["hang"].error or "")
    assert done.steps["hang"].attempts == 1  # final: not retried
    assert participant.applied[f"{done.saga_id}:hang:compensate"] == 1


async def test_a_short_sleep_is_woken_by_the_replica_that_parked_it() -> None:
    """With the real clock, a 0.2 s sleep resumes on this replica without a recovery pass."""
    saga: Saga[Order] = Saga("nap", input=Order)

    @saga.step()
    async def nap(ctx: SagaContext[Order]) -> str:
        await ctx.sleep(0.2)
        return "rested"

    runtime = SagaRuntime("test", MemorySagaStore(), tracing=False, recovery_interval=3600)
    runtime.declare(saga)
    handle = await runtime.start(saga, {"order_id": "o-1"})
    done = await handle.wait(5)
    assert done.status is SagaStatus.COMPLETED and done.results["nap"] == '"rested"'


def test_bad_durations_are_config_errors() -> None:
    """A deadline must be a positive duration."""
    with pytest.raises(ConfigError, match="deadline of saga 'x' must be a positive duration"):
        Saga("x", deadline=0)


async def test_crash_matrix_over_timers_events_and_a_deadline() -> None:
    """Crashing at every persisted point, including right after parking and right after the
    event was stored, converges with every effect applied once."""
    participant = Participant()
    saga = review_saga(participant)
    saga.deadline = 86400.0
    report = await crash_matrix(
        saga,
        {"order_id": "o-1"},
        ledger=lambda: dict(participant.applied),
        events={"fraud-review": {"approved": True, "by": "ann"}},
    )
    points = [case.crash_point for case in report.cases if case.scenario == "success path"]
    assert "signal fraud-review" in points
    assert points.count("after forward review") == 2  # parked, then completed
    assert points.count("after forward charge") == 2  # asleep, then completed
    assert {case.status for case in report.cases} == {SagaStatus.COMPLETED, SagaStatus.COMPENSATED}


async def test_the_deadline_is_waived_once_a_pivot_step_completed() -> None:
    """After a pivot (no compensation) the saga can only go forward: it completes late."""
    clock = ManualClock()
    saga: Saga[Order] = Saga("late", input=Order, deadline=60)

    @saga.step()
    async def ship(ctx: SagaContext[Order]) -> None: ...

    @saga.step()
    async def notify(ctx: SagaContext[Order]) -> str:
        await ctx.sleep(600)
        return "sent"

    runtime, _ = runtime_for(saga, clock)
    await runtime.start(saga, {"order_id": "o-1"}, saga_id="s-1")
    record = await parked(runtime, "s-1")
    assert record.lease_until == pytest.approx(clock() + 600)  # not capped by the deadline
    clock.advance(601)
    assert await runtime.recover() == 1
    done = await runtime.wait("s-1", 5)
    assert done.status is SagaStatus.COMPLETED and done.results["notify"] == '"sent"'


async def test_an_operator_compensating_a_parked_saga_runs_each_compensation_once() -> None:
    """A saga parked on an event is rolled back by an operator: the parked step counts as
    uncertain, compensations start at attempt 1, a later event is refused."""
    clock = ManualClock()
    participant = Participant()
    saga = review_saga(participant)
    runtime, _ = runtime_for(saga, clock)
    await runtime.start("reviewed", {"order_id": "o-1"}, saga_id="s-1")
    await parked(runtime, "s-1")
    await runtime.compensate("s-1")
    done = await runtime.wait("s-1", 5)
    assert done.status is SagaStatus.COMPENSATED
    assert done.steps["reserve"].compensation_attempts == 1
    assert not done.steps["review"].waiting
    with pytest.raises(SagaStateError, match="takes no more events"):
        await runtime.signal("s-1", "fraud-review", {"approved": True, "by": "x"})
