"""Child sagas: started once per parent step, awaited, linked both ways, compensated."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel
from saga_support import Participant

from nativekit.saga import MemorySagaStore, Saga, SagaContext, SagaRuntime, SagaStatus, StepStatus
from nativekit.testing import ManualClock, crash_matrix


class Order(BaseModel):
    """Parent input."""

    order_id: str
    fail: str | None = None


class Charge(BaseModel):
    """Child input."""

    order_id: str
    amount: int
    fail: str | None = None


def sagas(participant: Participant) -> tuple[Saga[Order], Saga[Charge]]:
    """place-order: reserve → payment (child take-payment: authorize → capture) → ship."""
    child: Saga[Charge] = Saga("take-payment", input=Charge)
    parent: Saga[Order] = Saga("place-order", input=Order)

    def compensated(saga: Saga[object], name: str) -> None:
        async def act(ctx: SagaContext[object]) -> str:
            if getattr(ctx.data, "fail", None) == name:
                raise PermissionError(f"{name} refused")
            participant.apply(ctx.idempotency_key)
            return name

        async def undo(ctx: SagaContext[object]) -> None:
            participant.apply(ctx.idempotency_key)

        saga.step(name=name, no_retry=(PermissionError,))(act).compensate(undo)

    compensated(child, "authorize")  # type: ignore[arg-type]
    compensated(child, "capture")  # type: ignore[arg-type]
    compensated(parent, "reserve")  # type: ignore[arg-type]

    @parent.child(child)
    async def payment(ctx: SagaContext[Order]) -> Charge:
        fail = ctx.data.fail if ctx.data.fail in ("authorize", "capture") else None
        return Charge(order_id=ctx.data.order_id, amount=990, fail=fail)

    compensated(parent, "ship")  # type: ignore[arg-type]
    return parent, child


def runtime_for(*definitions: Saga[object]) -> SagaRuntime:
    runtime = SagaRuntime("test", MemorySagaStore(), tracing=False)
    for saga in definitions:
        runtime.declare(saga)
    return runtime


async def test_a_child_runs_once_and_its_results_are_the_steps_result() -> None:
    """The parent completes with the child's results; both records name each other."""
    participant = Participant()
    parent, child = sagas(participant)
    runtime = runtime_for(parent, child)  # type: ignore[arg-type]
    handle = await runtime.start(parent, {"order_id": "o-1"}, saga_id="p-1")
    done = await handle.wait(5)
    assert done.status is SagaStatus.COMPLETED
    assert done.results["payment"] == '{"authorize":"authorize","capture":"capture"}'
    assert done.children == {"p-1:payment": "payment"}
    kid = await runtime.get("p-1:payment")
    assert kid.status is SagaStatus.COMPLETED and kid.parent == "p-1"
    assert kid.to_dict()["parent"] == "p-1"
    assert done.to_dict()["children"] == {"p-1:payment": "payment"}
    assert participant.applied["p-1:payment:capture:forward"] == 1


async def test_a_failed_child_fails_the_step_and_the_parent_compensates() -> None:
    """The child compensates itself; the parent's step fails (no retry) and undoes reserve."""
    participant = Participant()
    parent, child = sagas(participant)
    runtime = runtime_for(parent, child)  # type: ignore[arg-type]
    handle = await runtime.start(parent, {"order_id": "o-1", "fail": "capture"}, saga_id="p-1")
    done = await handle.wait(5)
    assert done.status is SagaStatus.COMPENSATED
    assert "child saga 'p-1:payment' ended COMPENSATED" in (done.steps["payment"].error or "")
    assert done.steps["payment"].attempts == 1
    kid = await runtime.get("p-1:payment")
    assert kid.status is SagaStatus.COMPENSATED
    assert participant.applied["p-1:payment:authorize:compensate"] == 1
    assert participant.applied["p-1:reserve:compensate"] == 1


async def test_the_parents_compensation_compensates_a_completed_child() -> None:
    """A step after the child fails: the COMPLETED child is rolled back, then reserve."""
    participant = Participant()
    parent, child = sagas(participant)
    runtime = runtime_for(parent, child)  # type: ignore[arg-type]
    handle = await runtime.start(parent, {"order_id": "o-1", "fail": "ship"}, saga_id="p-1")
    done = await handle.wait(5)
    assert done.status is SagaStatus.COMPENSATED
    assert done.steps["payment"].status is StepStatus.COMPENSATED
    kid = await runtime.get("p-1:payment")
    assert kid.status is SagaStatus.COMPENSATED
    assert participant.applied["p-1:payment:capture:compensate"] == 1
    assert participant.applied["p-1:payment:authorize:compensate"] == 1


async def test_a_parked_child_parks_the_parent_and_its_end_wakes_it() -> None:
    """A child waiting for an event parks; the parent parks too (no task); the child's
    event completes it and its end resumes the parent at once."""
    clock = ManualClock()
    child: Saga[Charge] = Saga("approve", input=Charge)

    @child.step(readonly=True)
    async def wait(ctx: SagaContext[Charge]) -> bool:
        return bool(await ctx.wait_for("ok", timeout=3600))

    parent: Saga[Order] = Saga("outer", input=Order)

    @parent.child(child)
    async def approval(ctx: SagaContext[Order]) -> Charge:
        return Charge(order_id=ctx.data.order_id, amount=1)

    store = MemorySagaStore(clock=clock)
    runtime = SagaRuntime("test", store, tracing=False, clock=clock)
    runtime.declare(parent)
    await runtime.start(parent, {"order_id": "o-1"}, saga_id="p-1")
    for _ in range(200):
        record = await store.get("p-1")
        if record is not None and record.steps.get("approval") and record.steps["approval"].waiting:
            break
        await __import__("asyncio").sleep(0.01)
    assert "p-1" not in runtime.runs and "p-1:approval" not in runtime.runs
    assert record is not None and record.awaiting == ["child.approval"]
    assert await runtime.signal("p-1:approval", "ok", True)
    done = await runtime.wait("p-1", 5)
    assert done.status is SagaStatus.COMPLETED
    assert done.results["approval"] == '{"wait":true}'


async def test_crash_matrix_over_a_child_saga() -> None:
    """Crashing at every point of parent and child (success and each parent step failing)
    converges, each effect once: a recovered parent never starts a second child."""
    participant = Participant()
    parent, _ = sagas(participant)
    report = await crash_matrix(
        parent, {"order_id": "o-1"}, ledger=lambda: dict(participant.applied)
    )
    points = {case.crash_point for case in report.cases}
    assert {
        "before forward authorize",
        "after forward capture",
        "after compensate payment",
    } <= points
    assert {case.status for case in report.cases} == {SagaStatus.COMPLETED, SagaStatus.COMPENSATED}


@pytest.mark.parametrize("fail", ["authorize", "ship"])
async def test_crash_matrix_over_child_failures(fail: str) -> None:
    """The same with the child failing inside, and with the parent failing after it."""
    participant = Participant()
    parent, _ = sagas(participant)
    report = await crash_matrix(
        parent,
        {"order_id": "o-1", "fail": fail},
        ledger=lambda: dict(participant.applied),
        fail_steps=False,
    )
    assert {case.status for case in report.cases} == {SagaStatus.COMPENSATED}


class _CrashAfterChild:
    """Hooks: the parent's process dies once its child step returned (the child is stored
    COMPLETED), before the parent writes anything more."""

    def __init__(self) -> None:
        self.crashed = False

    async def before(self, record: object, step: str, direction: str) -> None:
        return None

    async def after(self, record: object, step: str, direction: str) -> None:
        if step == "payment" and direction == "forward" and not self.crashed:
            self.crashed = True
            raise asyncio.CancelledError


async def test_a_child_started_by_an_attempt_that_then_died_is_compensated() -> None:
    """The parent dies after its child completed but before it recorded the child; the
    recovered parent gives the step up (no interruption left), compensates, and the child
    found under its derived id is compensated too."""
    participant = Participant()
    parent, child = sagas(participant)
    clock = ManualClock()
    store = MemorySagaStore(clock=clock)
    hooks = _CrashAfterChild()
    first = SagaRuntime("a", store, tracing=False, clock=clock, hooks=hooks, lease=5)
    first.declare(parent)
    first.declare(child)
    await first.start(parent, {"order_id": "o-1"}, saga_id="p-9")
    async with asyncio.timeout(5):
        while first.runs:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    stored = await store.get("p-9")
    assert stored is not None and "p-9:payment" not in stored.children
    assert (await store.get("p-9:payment")).status is SagaStatus.COMPLETED  # type: ignore[union-attr]
    second = SagaRuntime("b", store, tracing=False, clock=clock, lease=5, max_interruptions=0)
    second.declare(parent)
    second.declare(child)
    clock.advance(6)
    assert await second.recover() >= 1
    done = await second.wait("p-9", 5)
    assert done.status is SagaStatus.COMPENSATED
    assert done.steps["payment"].uncertain
    assert (await second.get("p-9:payment")).status is SagaStatus.COMPENSATED
    assert participant.applied["p-9:payment:authorize:compensate"] == 1
