"""Parallel groups: members run at once and are joined; a failure cancels or lets finish;
every completed (or uncertain) member is compensated, latest first."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel
from saga_support import Participant

from nativekit.errors import ConfigError
from nativekit.saga import MemorySagaStore, Saga, SagaContext, SagaRuntime, SagaStatus, StepStatus
from nativekit.testing import crash_matrix


class Order(BaseModel):
    """Input."""

    order_id: str


def fan_out(
    participant: Participant,
    *,
    on_failure: str = "cancel",
    fail: str | None = None,
    barrier: asyncio.Barrier | None = None,
    blocked: set[str] = frozenset(),  # type: ignore[assignment]
    log: list[str] | None = None,
) -> Saga[Order]:
    """validate → [stock, payment, shipping] in parallel → confirm."""
    saga: Saga[Order] = Saga("fan-out", input=Order)
    log = log if log is not None else []

    @saga.step(readonly=True)
    async def validate(ctx: SagaContext[Order]) -> str:
        return ctx.data.order_id

    group = saga.parallel("reserve", on_failure=on_failure)  # type: ignore[arg-type]
    for name in ("stock", "payment", "shipping"):

        async def act(ctx: SagaContext[Order], name: str = name) -> str:
            log.append(f"start {name}")
            assert ctx.results["validate"] == ctx.data.order_id
            if barrier is not None:
                await barrier.wait()
            if name in blocked:
                await asyncio.sleep(3600)
            if name == fail:
                await asyncio.sleep(0.01)
                raise PermissionError(f"{name} refused")
            participant.apply(ctx.idempotency_key)
            log.append(f"done {name}")
            return name

        async def undo(ctx: SagaContext[Order]) -> None:
            log.append(f"undo {ctx.step}")
            participant.apply(ctx.idempotency_key)

        group.step(name=name, retries=0)(act).compensate(undo)

    @saga.step()
    async def confirm(ctx: SagaContext[Order]) -> list[str]:
        participant.apply(ctx.idempotency_key)
        return sorted(ctx.results)

    @confirm.compensate
    async def unconfirm(ctx: SagaContext[Order]) -> None:
        participant.apply(ctx.idempotency_key)

    return saga


async def run(saga: Saga[Order], saga_id: str = "s-1") -> tuple[SagaRuntime, object]:
    runtime = SagaRuntime("test", MemorySagaStore(), tracing=False)
    runtime.declare(saga)
    handle = await runtime.start(saga, {"order_id": "o-1"}, saga_id=saga_id)
    return runtime, await handle.wait(10)


async def test_members_run_at_the_same_time_and_join_before_the_next_step() -> None:
    """Three members meet at a barrier (impossible one after another); confirm sees all three."""
    participant = Participant()
    saga = fan_out(participant, barrier=asyncio.Barrier(3))
    _, record = await run(saga)
    assert record.status is SagaStatus.COMPLETED  # type: ignore[attr-defined]
    assert record.results["confirm"] == '["payment","shipping","stock","validate"]'  # type: ignore[attr-defined]
    assert record.order[0] == "validate" and record.order[-1] == "confirm"  # type: ignore[attr-defined]
    assert set(record.order[1:4]) == {"stock", "payment", "shipping"}  # type: ignore[attr-defined]


async def test_a_failed_member_cancels_the_others_and_everything_is_compensated() -> None:
    """on_failure='cancel': a blocked member is cancelled (uncertain, compensated), the
    completed one is compensated, the failed one is not; the saga ends COMPENSATED."""
    participant = Participant()
    saga = fan_out(participant, fail="payment", blocked={"shipping"})
    _, record = await run(saga)
    assert record.status is SagaStatus.COMPENSATED  # type: ignore[attr-defined]
    steps = record.steps  # type: ignore[attr-defined]
    assert steps["payment"].status is StepStatus.FAILED
    assert "refused" in (steps["payment"].error or "")
    assert steps["shipping"].status is StepStatus.COMPENSATED and steps["shipping"].uncertain
    assert "cancelled" in (steps["shipping"].error or "")
    assert steps["stock"].status is StepStatus.COMPENSATED
    assert "s-1:payment:compensate" not in participant.applied
    assert {"s-1:stock:compensate", "s-1:shipping:compensate"} <= set(participant.applied)
    assert "s-1:confirm:forward" not in participant.applied


async def test_finish_lets_the_other_members_complete_before_compensating() -> None:
    """on_failure='finish': the slower members complete, then all completed ones are undone."""
    participant = Participant()
    log: list[str] = []
    saga = fan_out(participant, on_failure="finish", fail="stock", log=log)
    _, record = await run(saga)
    assert record.status is SagaStatus.COMPENSATED  # type: ignore[attr-defined]
    assert {"done payment", "done shipping"} <= set(log)
    undone = [entry for entry in log if entry.startswith("undo")]
    assert sorted(undone) == ["undo payment", "undo shipping"]
    assert record.steps["stock"].status is StepStatus.FAILED  # type: ignore[attr-defined]


def test_members_must_be_declared_one_after_another() -> None:
    """A saga step declared between two members of a group is a ConfigError naming both."""
    saga: Saga[Order] = Saga("split", input=Order)
    group = saga.parallel("g")

    @group.step()
    async def a(ctx: SagaContext[Order]) -> None: ...

    @saga.step()
    async def b(ctx: SagaContext[Order]) -> None: ...

    with pytest.raises(ConfigError, match=r"'c' of parallel group 'g' comes after step 'b'"):

        @group.step()
        async def c(ctx: SagaContext[Order]) -> None: ...


def test_grouping_changes_the_definition_hash_and_on_failure_is_checked() -> None:
    """The same steps grouped or in sequence are different definitions; bad on_failure fails."""
    seq: Saga[Order] = Saga("x", input=Order)
    par: Saga[Order] = Saga("x", input=Order)
    group = par.parallel("g")
    for name in ("a", "b"):

        async def f(ctx: SagaContext[Order]) -> None: ...

        seq.step(name=name)(f)
        group.step(name=name)(f)
    assert seq.definition_hash != par.definition_hash
    with pytest.raises(ConfigError, match="on_failure='later'"):
        par.parallel("h", on_failure="later")  # type: ignore[arg-type]


async def test_crash_matrix_over_a_parallel_group() -> None:
    """A crash at every persisted point of a group (success path and each member failing)
    ends COMPLETED or COMPENSATED with every effect applied once."""
    participant = Participant()
    saga = fan_out(participant)
    report = await crash_matrix(saga, {"order_id": "o-1"}, ledger=lambda: dict(participant.applied))
    points = {case.crash_point for case in report.cases}
    assert {"before forward stock", "after forward payment", "after compensate shipping"} <= points
    scenarios = {case.scenario for case in report.cases}
    assert "step 'payment' fails" in scenarios
    assert {case.status for case in report.cases} == {SagaStatus.COMPLETED, SagaStatus.COMPENSATED}


class CountingStore(MemorySagaStore):
    """Counts the writes (round trips on a real store) of sagas."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[dict[str, str]] = []

    async def write(self, saga_id: str, token: str, change, **kwargs):  # type: ignore[no-untyped-def, override]
        self.writes.append(dict(change.fields))
        return await super().write(saga_id, token, change, **kwargs)


async def test_the_members_starts_are_one_write_and_stored_before_any_member_runs() -> None:
    """A group after a step costs one write to start (the step's completion and every
    member's start) and none per member completion; each member finds its start stored
    when its function runs."""
    store = CountingStore()
    saga: Saga[Order] = Saga("counted", input=Order)
    seen: dict[str, str] = {}

    @saga.step(readonly=True)
    async def validate(ctx: SagaContext[Order]) -> None:
        return None

    group = saga.parallel("fan")
    for name in ("stock", "payment", "shipping"):

        @group.step(name=name)
        async def member(ctx: SagaContext[Order]) -> None:
            stored = await store.get(ctx.saga_id)
            assert stored is not None
            seen[ctx.step] = stored.step(ctx.step).status.value

    runtime = SagaRuntime("test", store, tracing=False)
    runtime.declare(saga)
    record = await (await runtime.start(saga, {"order_id": "o-1"}, saga_id="c-1")).wait(10)
    assert record.status is SagaStatus.COMPLETED
    assert seen == {"stock": "running", "payment": "running", "shipping": "running"}
    starts = [f"step:{n}" for n in ("stock", "payment", "shipping")]
    assert len(store.writes) == 2  # the group's start, then its completions with the end
    assert set(starts) | {"result:validate"} <= set(store.writes[0])
    assert {f"result:{n}" for n in ("stock", "payment", "shipping")} <= set(store.writes[1])
