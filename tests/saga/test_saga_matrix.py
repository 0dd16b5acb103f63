"""The crash matrix of nativekit.testing._sagas, pointed at a saga as a user would."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from nativekit.saga import Saga, SagaContext, SagaStatus
from nativekit.testing import crash_matrix


class Order(BaseModel):
    """Input."""

    order_id: str


class Payments:
    """A fake participant; ``idempotent=False`` applies an effect on every call."""

    def __init__(self, *, idempotent: bool) -> None:
        self.idempotent = idempotent
        self.applied: dict[str, int] = {}

    def apply(self, key: str) -> None:
        """Apply the effect for ``key`` (once, when idempotent)."""
        if self.idempotent and key in self.applied:
            return
        self.applied[key] = self.applied.get(key, 0) + 1


def order_saga(payments: Payments) -> Saga[Order]:
    """reserve → charge → ship, each compensated, retried once."""
    saga: Saga[Order] = Saga("order", input=Order)
    for name in ("reserve", "charge", "ship"):

        async def act(ctx: SagaContext[Order]) -> None:
            payments.apply(ctx.idempotency_key)

        async def undo(ctx: SagaContext[Order]) -> None:
            payments.apply(ctx.idempotency_key)

        saga.step(name=name, retries=1)(act).compensate(undo)
    return saga


async def test_crash_matrix_converges_for_idempotent_participants() -> None:
    """Crashing before/after every step and compensation always ends COMPLETED or COMPENSATED."""
    payments = Payments(idempotent=True)
    report = await crash_matrix(
        order_saga(payments), {"order_id": "o-1"}, ledger=lambda: payments.applied
    )
    points = {case.crash_point for case in report.cases}
    assert "before forward reserve" in points and "after compensate reserve" in points
    assert len(report.cases) == 6 + 2 + 6 + 10  # success path + a failure at each step
    assert {case.status for case in report.cases} == {
        SagaStatus.COMPLETED,
        SagaStatus.COMPENSATED,
    }


async def test_crash_matrix_catches_a_participant_that_ignores_the_key() -> None:
    """A participant that applies an effect twice for one key fails the matrix, naming the case."""
    payments = Payments(idempotent=False)
    with pytest.raises(AssertionError, match=r"crash after forward reserve.*applied exactly once"):
        await crash_matrix(
            order_saga(payments), {"order_id": "o-1"}, ledger=lambda: payments.applied
        )
