"""The payments service: charges and refunds, each applied once per idempotency key.

Test tokens: ``tok_decline`` is declined, ``tok_fail`` fails the first attempt with a
503 (retrying with the same key succeeds), any other token is approved.
"""

from __future__ import annotations

from typing import Annotated

import nativekit
from examples.shop.config import config
from examples.shop.models import (
    Payment,
    PaymentCharged,
    PaymentRefunded,
    PaymentRequest,
    payment_id_for,
)
from examples.shop.payments_store import MemoryPaymentStore, PaymentStore, RedisPaymentStore

svc = nativekit.Service("payments")
#: Money captured and refunded, announced for other services.
payment_events = svc.publisher(
    config.topic("payments"), PaymentCharged, PaymentRefunded, key="order_id",
    description="Captures and refunds.",
)  # fmt: skip


class PaymentUnavailable(Exception):
    """The payment provider failed; retrying with the same idempotency key is safe."""


class Payments:
    """The payments domain, used by the HTTP routes (and in process by orders)."""

    def __init__(self) -> None:
        self.memory = MemoryPaymentStore()
        self.redis: RedisPaymentStore | None = None

    @property
    def store(self) -> PaymentStore:
        """Redis when the service has one, else process memory."""
        if not svc.uses_redis:
            return self.memory
        if self.redis is None:
            self.redis = RedisPaymentStore(svc.redis, config.key_prefix)
        return self.redis

    async def charge(self, idempotency_key: str, request: PaymentRequest) -> Payment:
        """Capture ``request.amount`` once per key; a repeated key returns the first answer."""
        payment_id = payment_id_for(idempotency_key)
        payment = await self.store.get(payment_id)
        if payment is None:
            if request.token == "tok_fail" and await self.store.first_attempt(payment_id):
                raise PaymentUnavailable("payment provider timed out (tok_fail); retry")
            declined = request.token == "tok_decline"
            payment = await self.store.add_if_missing(
                Payment(
                    payment_id=payment_id,
                    order_id=request.order_id,
                    amount=request.amount,
                    status="DECLINED" if declined else "CAPTURED",
                    reason="card declined" if declined else None,
                )
            )
        if payment.status == "CAPTURED":  # again on a retry: the event may not have gone out
            event = PaymentCharged(
                payment_id=payment_id, order_id=payment.order_id, amount=payment.amount
            )
            await payment_events.publish(event, message_id=f"{payment_id}:c")
        return payment

    async def refund(self, payment_id: str, order_id: str) -> Payment:
        """Refund a capture once; refunding an unknown payment voids its id for good."""
        payment, _ = await self.store.refund(payment_id, order_id)
        if payment.status == "REFUNDED":
            event = PaymentRefunded(
                payment_id=payment_id, order_id=payment.order_id, amount=payment.amount
            )
            await payment_events.publish(event, message_id=f"{payment_id}:r")
        return payment


payments = Payments()


@svc.on_shutdown
async def forget_client() -> None:
    """The service closes its Redis client on shutdown; a restart gets a new one."""
    payments.redis = None


@svc.post("/payments", status_code=201, responses={
    402: "The card was declined; the problem's 'payment' member is the declined payment.",
    503: "The payment provider failed; retry with the same Idempotency-Key.",
})  # fmt: skip
async def create_payment(
    body: PaymentRequest, idempotency_key: Annotated[str, nativekit.Header("Idempotency-Key")]
) -> Payment:
    """Charge a payment once per Idempotency-Key.

    402 when declined, 503 (retry with the same key) when the provider failed."""
    try:
        payment = await payments.charge(idempotency_key, body)
    except PaymentUnavailable as exc:
        raise nativekit.HTTPError(503, str(exc), headers={"Retry-After": "1"}) from exc
    if payment.status != "CAPTURED":
        raise nativekit.HTTPError(
            402,
            payment.reason or f"payment {payment.status.lower()}",
            extra={"payment": payment.model_dump()},
        )
    return payment


@svc.get("/payments")
async def list_payments(order_id: str) -> list[Payment]:
    """Every payment (charge, refund, void) of one order, for reconciliation."""
    return sorted(await payments.store.of_order(order_id), key=lambda p: p.payment_id)


@svc.get("/payments/{payment_id}")
async def get_payment(payment_id: str) -> Payment:
    """One payment."""
    payment = await payments.store.get(payment_id)
    if payment is None:
        raise nativekit.HTTPError(404, f"no payment {payment_id!r}")
    return payment


@svc.post("/payments/{payment_id}/refund")
async def refund_payment(payment_id: str, order_id: str) -> Payment:
    """Refund a captured payment (idempotent)."""
    return await payments.refund(payment_id, order_id)


app = svc.app
# The process serves this service under load: fewer collector passes, and what
# importing built is frozen out of them (docs/performance.md).
nativekit.tune_gc()
