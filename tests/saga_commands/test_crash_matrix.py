"""The crash matrix covers command steps: crash before a command is written, after it is
written (before it is published), and after a reply claimed the saga (before it resumed)."""

from __future__ import annotations

from pydantic import BaseModel

from nativekit import CommandRejected, Saga, SagaContext
from nativekit.saga import SagaStatus
from nativekit.testing import crash_matrix, run_saga


class Order(BaseModel):
    order_id: str
    amount: int = 10


class Reserve(BaseModel):
    order_id: str


class Reserved(BaseModel):
    reservation: str


class Release(BaseModel):
    order_id: str


class Charge(BaseModel):
    order_id: str
    amount: int


class Charged(BaseModel):
    charge: str


class Refund(BaseModel):
    order_id: str


def build() -> Saga[Order]:
    saga: Saga[Order] = Saga("matrix-order", input=Order)

    @saga.step(readonly=True)
    async def check(ctx: SagaContext[Order]) -> int:
        return ctx.data.amount

    @saga.command_step(topic="inventory.commands", reply=Reserved, reply_timeout=5, retries=1)
    async def reserve(ctx: SagaContext[Order]) -> Reserve:
        return Reserve(order_id=ctx.data.order_id)

    @reserve.compensate_command(topic="inventory.commands")
    async def release(ctx: SagaContext[Order]) -> Release:
        return Release(order_id=ctx.data.order_id)

    @saga.command_step(topic="payments.commands", reply=Charged, reply_timeout=5, retries=1)
    async def charge(ctx: SagaContext[Order]) -> Charge:
        return Charge(order_id=ctx.data.order_id, amount=ctx.data.amount)

    @charge.compensate_command(topic="payments.commands")
    async def refund(ctx: SagaContext[Order]) -> Refund:
        return Refund(order_id=ctx.data.order_id)

    return saga


async def on_reserve(cmd: Reserve) -> Reserved:
    return Reserved(reservation=f"r-{cmd.order_id}")


async def on_release(cmd: Release) -> None:
    return None


async def on_charge(cmd: Charge) -> Charged:
    if cmd.amount > 100:
        raise CommandRejected("card declined")
    return Charged(charge=f"c-{cmd.order_id}")


async def on_refund(cmd: Refund) -> None:
    return None


PARTICIPANTS = {
    "Reserve": on_reserve,
    "Release": on_release,
    "Charge": on_charge,
    "Refund": on_refund,
}


async def test_matrix_of_a_command_saga_converges_with_each_effect_once() -> None:
    """Every crash point of a mixed local/command saga ends COMPLETED or COMPENSATED, once each."""
    report = await crash_matrix(build(), {"order_id": "o-1"}, participants=PARTICIPANTS)
    points = {case.crash_point for case in report.cases}
    assert {"after forward reserve", "reply forward reserve", "reply compensate reserve"} <= points
    assert {case.status for case in report.cases} == {SagaStatus.COMPLETED, SagaStatus.COMPENSATED}


async def test_matrix_with_a_rejecting_participant() -> None:
    """A failure reply compensates at every crash point of the rollback."""
    report = await crash_matrix(
        build(), {"order_id": "o-2", "amount": 500}, participants=PARTICIPANTS, fail_steps=False
    )
    assert {case.status for case in report.cases} == {SagaStatus.COMPENSATED}


async def test_run_saga_is_not_enough_without_participants() -> None:
    """run_saga stays a local-steps helper; command sagas go through the matrix's network."""
    saga: Saga[Order] = Saga("local-only", input=Order)

    @saga.step()
    async def only(ctx: SagaContext[Order]) -> str:
        return ctx.data.order_id

    assert (await run_saga(saga, {"order_id": "x"})).status is SagaStatus.COMPLETED
