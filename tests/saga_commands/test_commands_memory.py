"""Command/reply sagas on memory backends: three services in one process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

import nativekit
from nativekit.saga import SagaStatus
from nativekit.testing import memory_broker
from tests.support import grouped

from .shop import (
    CardCharged,
    CardRefunded,
    ChargeCard,
    RefundCard,
    inventory_service,
    memory_ledger,
    orders_service,
    payments_service,
    topics,
)


def _settings(**extra: object) -> nativekit.Settings:
    values: dict[str, object] = {
        "saga_recovery_interval": 0.05,
        "outbox_poll_interval": 0.05,
        "consumer_retry_backoff": 0.01,
        "log_level": "WARNING",
    }
    values.update(extra)
    return nativekit.Settings(**grouped(values))


@contextlib.asynccontextmanager
async def running(*services: nativekit.Service) -> AsyncIterator[None]:
    """Start ``services`` and wait until they are ready (their consumers joined), as a
    load balancer would before sending traffic."""
    for svc in services:
        await svc.startup(hook_sigterm=False)
    while any(svc.health.starting() for svc in services):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        for svc in reversed(services):
            await svc.shutdown()


@pytest.fixture
def names(unique: str) -> dict[str, str]:
    """Unique topic names."""
    return topics(f"mem{unique}")


async def test_happy_path_completes_with_replies_as_results(names: dict[str, str]) -> None:
    """A saga of a local and two command steps completes; results are the typed replies."""
    ledger, count = memory_ledger()
    orders = orders_service(_settings(saga_reply_topic=names["replies"]), names)
    async with running(
        orders,
        inventory_service(_settings(), names, count),
        payments_service(_settings(), names, count),
    ):
        handle = await orders.sagas.start("place-order", {"order_id": "o1"})
        record = await handle.wait(10)
    assert record.status is SagaStatus.COMPLETED, record.error
    assert record.to_dict()["results"]["reserve_stock"] == {"reservation_id": "r-o1"}
    assert record.to_dict()["results"]["confirm"] == "c-o1"
    assert ledger == {"o1:reserve": 1, "o1:charge": 1}
    assert record.wait is None
    events = (
        [r for r in memory_broker().records(names["events"])]
        if hasattr(memory_broker(), "records")
        else None
    )
    del events


async def test_failure_reply_compensates_with_commands(names: dict[str, str]) -> None:
    """A rejected charge is not retried: the reservation is released by a command."""
    ledger, count = memory_ledger()
    orders = orders_service(_settings(saga_reply_topic=names["replies"]), names)
    async with running(
        orders,
        inventory_service(_settings(), names, count),
        payments_service(_settings(), names, count),
    ):
        handle = await orders.sagas.start("place-order", {"order_id": "o2", "behaviour": "reject"})
        record = await handle.wait(10)
    assert record.status is SagaStatus.COMPENSATED, record.error
    assert record.steps["charge_card"].attempts == 1
    assert "card declined" in (record.steps["charge_card"].error or "")
    assert ledger == {"o2:reserve": 1, "o2:release": 1}


async def test_reply_timeout_compensates(names: dict[str, str]) -> None:
    """A reply later than reply_timeout fails the step; the late reply is counted, not used."""
    ledger, count = memory_ledger()
    orders = orders_service(_settings(saga_reply_topic=names["replies"]), names, timeout=0.3)
    async with running(
        orders,
        inventory_service(_settings(), names, count),
        payments_service(_settings(), names, count, slow=0.6),
    ):
        handle = await orders.sagas.start("place-order", {"order_id": "o3", "behaviour": "slow"})
        record = await handle.wait(10)
        await asyncio.sleep(0.5)
    assert record.status is SagaStatus.COMPENSATED, record.error
    assert "no reply" in (record.steps["charge_card"].error or "")
    # the charge happened late; its compensation (uncertain outcome) refunded it
    assert ledger == {"o3:reserve": 1, "o3:release": 1, "o3:charge": 1, "o3:refund": 1}


async def test_a_handler_that_keeps_failing_is_dead_lettered_with_a_failure_reply(
    names: dict[str, str],
) -> None:
    """Retries exhausted: the command goes to the DLQ and the saga gets a failure reply."""
    ledger, count = memory_ledger()
    payments = nativekit.Service("payments", settings=_settings(consumer_retries=1))
    calls: list[str] = []

    @payments.command_handler(names["payments"])
    async def on_charge(cmd: ChargeCard) -> CardCharged:
        calls.append(cmd.order_id)
        raise RuntimeError("gateway exploded")

    orders = orders_service(_settings(saga_reply_topic=names["replies"]), names)
    async with running(orders, inventory_service(_settings(), names, count), payments):
        record = await (await orders.sagas.start("place-order", {"order_id": "d1"})).wait(10)
    assert record.status is SagaStatus.COMPENSATED
    assert "RuntimeError: gateway exploded" in (record.steps["charge_card"].error or "")
    assert calls == ["d1", "d1"]  # first attempt and one retry
    dead = memory_broker().records(f"{names['payments']}.dlq")
    assert [dict(r.headers)["dlq-error-type"] for r in dead] == [b"RuntimeError"]
    assert ledger == {"d1:reserve": 1, "d1:release": 1}


async def test_an_unknown_command_type_gets_a_failure_reply_at_once(
    names: dict[str, str],
) -> None:
    """A command no handler of the topic accepts is refused and dead-lettered, not retried."""
    _, count = memory_ledger()
    payments = nativekit.Service("payments", settings=_settings())

    @payments.command_handler(names["payments"])
    async def on_refund(cmd: RefundCard) -> CardRefunded:  # no ChargeCard handler
        return CardRefunded(refunded=True)

    orders = orders_service(_settings(saga_reply_topic=names["replies"]), names)
    async with running(orders, inventory_service(_settings(), names, count), payments):
        record = await (await orders.sagas.start("place-order", {"order_id": "u1"})).wait(10)
    assert record.status is SagaStatus.COMPENSATED
    assert "no handler for command type 'ChargeCard'" in (record.steps["charge_card"].error or "")
    dead = memory_broker().records(f"{names['payments']}.dlq")
    assert [dict(r.headers)["dlq-error-type"] for r in dead] == [b"UndeliverableCommand"]


async def test_a_reply_consumer_that_cannot_join_does_not_hold_up_startup(
    names: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply consumer whose group refuses it leaves startup to finish (it keeps joining
    in the background); shutdown then stops it and the outbox relay."""
    from nativekit.errors import BackendUnavailable
    from nativekit.messaging._wire.memory import MemoryGroupConsumer

    join = MemoryGroupConsumer.start

    async def refuse_replies(self: MemoryGroupConsumer) -> None:
        if self.group_id == "orders.replies":
            raise BackendUnavailable("cannot join the reply group (test)")
        await join(self)

    monkeypatch.setattr(MemoryGroupConsumer, "start", refuse_replies)
    orders = orders_service(_settings(saga_reply_topic=names["replies"]), names)
    await orders.startup(hook_sigterm=False)
    relay = orders._saga_commands.relay
    replies = orders._saga_commands.consumer
    try:
        assert relay is not None and relay._task is not None and not relay._task.done()
        assert replies is not None
        await asyncio.sleep(0.1)
        joining = replies.joining()
        assert joining is not None and "reply group" in (joining.output or "")
    finally:
        await orders.shutdown()
    assert relay._task is None and not replies.running


async def test_a_command_handler_cancelled_at_shutdown_leaves_the_command_free(
    names: dict[str, str],
) -> None:
    """A command handler cancelled by shutdown (drain timeout) gives its idempotency key
    back: the command, redelivered after a restart, runs at once instead of waiting for
    the key's lease (NATIVEKIT_CONSUMER_DEDUP_LEASE_SECONDS) to expire."""
    from nativekit.messaging import MemoryBroker
    from tests.messaging.conftest import eventually

    payments = nativekit.Service("payments", settings=_settings(consumer_drain_timeout=0.05))
    payments.messaging.use_broker(MemoryBroker())
    entered = asyncio.Event()
    charged: list[str] = []

    @payments.command_handler(names["payments"])
    async def on_charge(cmd: ChargeCard) -> CardCharged:
        if not entered.is_set():
            entered.set()
            await asyncio.Event().wait()  # cancelled by the shutdown
        charged.append(cmd.order_id)
        return CardCharged(charge_id=f"ch-{cmd.order_id}")

    await payments.startup(hook_sigterm=False)
    command = ChargeCard(order_id="c1", amount_cents=1, behaviour="ok")
    await payments.publish(names["payments"], command)
    await asyncio.wait_for(entered.wait(), 2)
    await payments.shutdown()
    await payments.startup(hook_sigterm=False)
    try:  # well within the 30 s lease
        await eventually(lambda: charged == ["c1"], within=3, what="the command run again")
    finally:
        await payments.shutdown()


async def test_a_command_handler_slower_than_the_lease_is_not_run_again_by_a_copy(
    names: dict[str, str],
) -> None:
    """While a handler runs, its key's lease is renewed: a copy of the command (same
    idempotency key, as a retried saga step sends) waits and gets the stored reply
    instead of running the handler a second time once the first lease ran out."""
    from nativekit.messaging import MemoryBroker
    from nativekit.messaging._commands.handlers import IDEMPOTENCY_KEY
    from tests.messaging.conftest import eventually

    payments = nativekit.Service("payments", settings=_settings(dedup_lease=0.3))
    payments.messaging.use_broker(MemoryBroker())
    charged: list[str] = []

    @payments.command_handler(names["payments"])
    async def on_charge(cmd: ChargeCard) -> CardCharged:
        charged.append(cmd.order_id)
        await asyncio.sleep(1.0)  # three leases long
        return CardCharged(charge_id=f"ch-{cmd.order_id}")

    await payments.startup(hook_sigterm=False)
    try:
        command = ChargeCard(order_id="c1", amount_cents=1, behaviour="ok")
        for key in ("a", "b"):  # two message keys: handled concurrently
            await payments.publish(names["payments"], command, key=key,
                                   headers={IDEMPOTENCY_KEY: "charge-c1"})  # fmt: skip
        labels = {"service": "payments", "topic": names["payments"], "command": "ChargeCard"}

        def answered(outcome: str) -> float | None:
            return payments.metrics.registry.get_sample_value(
                "nativekit_commands_handled_total", {**labels, "outcome": outcome}
            )

        await eventually(lambda: answered("duplicate") == 1, within=5, what="the copy answered")
        assert answered("ok") == 1
    finally:
        await payments.shutdown()
    assert charged == ["c1"]


async def test_outbox_gauges_are_read_without_a_readiness_probe(names: dict[str, str]) -> None:
    """The outbox backlog gauges are read by the relay's own census, not only by /readyz
    (outside Kubernetes nothing may probe it): they appear with no probe made."""
    orders = orders_service(_settings(saga_reply_topic=names["replies"]), names)
    sample = orders.metrics.registry.get_sample_value
    labels = {"service": orders.name}
    async with running(orders):
        for _ in range(500):
            if sample("nativekit_outbox_backlog", labels) is not None:
                break
            await asyncio.sleep(0.01)
        assert sample("nativekit_outbox_backlog", labels) == 0.0
        assert sample("nativekit_outbox_oldest_age_seconds", labels) == 0.0
