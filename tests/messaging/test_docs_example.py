"""The messaging docs example runs as the page says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from nativekit.testing import MessagingHarness
from tests.messaging.conftest import eventually

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "messaging.py"


def load(name: str = "messaging.py") -> ModuleType:
    """Import a docs/examples file as a fresh module."""
    spec = importlib.util.spec_from_file_location(
        f"docs_example_{name[:-3]}", EXAMPLE.with_name(name)
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_docs_example_handles_duplicates_and_poison() -> None:
    """A payment is handled once, announced, and a declined card goes to the DLQ."""
    example = load()
    async with MessagingHarness(example.svc) as harness:
        event = example.PaymentReceived(order_id="o-1", amount_cents=1200)
        first = await harness.deliver("payments.events", event, key="o-1", message_id="p-1")
        again = await harness.deliver("payments.events", event, key="o-1", message_id="p-1")
        declined = await harness.deliver(
            "payments.events", example.PaymentReceived(order_id="o-2", amount_cents=0)
        )
        announced = harness.published("orders.events")
        [dead] = harness.dead_letters("payments.events")
    assert (first.outcome, again.outcome, declined.outcome) == (
        "processed",
        "duplicate",
        "dead_lettered",
    )
    assert example.paid == {"o-1": 1200}
    assert [m.value for m in announced] == [b'{"order_id":"o-1"}']
    assert dead.header("dlq-error-type") == "CardDeclined"


async def test_docs_event_types_example_skips_the_other_event() -> None:
    """The event_types example: inventory takes OrderConfirmed only, the audit consumer
    takes OrderConfirmed and OrderCancelled (its union), each skips the rest."""
    example = load("messaging_event_types.py")
    async with MessagingHarness(example.svc) as harness:
        for event in (
            example.OrderPlaced(order_id="o-1", customer_id="c", total=5),
            example.OrderConfirmed(order_id="o-1", total=5),
            example.OrderCancelled(order_id="o-2", reason="no stock"),
        ):
            await harness.deliver("orders.events", event)
        await eventually(lambda: len(harness.deliveries) == 6, what="both groups done")
    outcomes = {(d.group, d.offset): d.outcome for d in harness.deliveries}
    assert outcomes == {
        ("inventory.on_confirmed", 0): "skipped", ("inventory.on_confirmed", 1): "processed",
        ("inventory.on_confirmed", 2): "skipped",
        ("order-audit", 0): "skipped", ("order-audit", 1): "processed",
        ("order-audit", 2): "processed",
    }  # fmt: skip
    assert example.sold == ["o-1"]
    assert example.closed == ["o-1 confirmed: 5", "o-2 cancelled: no stock"]
