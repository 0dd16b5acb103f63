"""How to test a consumer: deliver messages to it in process with MessagingHarness."""

from docs.examples.messaging import PaymentReceived, svc
from nativekit.testing import MessagingHarness


async def test_payment_is_handled_once() -> None:
    """A redelivered payment is a duplicate; a payload that is not JSON is dead-lettered."""
    event = PaymentReceived(order_id="o-1", amount_cents=1200)
    async with MessagingHarness(svc) as harness:
        first = await harness.deliver("payments.events", event, message_id="p-1")
        again = await harness.deliver("payments.events", event, message_id="p-1")
        poison = await harness.deliver("payments.events", b"not json")
        assert (first.outcome, again.outcome, poison.outcome) == (
            "processed",
            "duplicate",
            "dead_lettered",
        )
        [dead] = harness.dead_letters("payments.events")
        assert dead.header("dlq-error-type") == "DecodeError"
