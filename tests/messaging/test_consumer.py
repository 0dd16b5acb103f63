"""Consumer behaviour on the memory broker: dedup, retries, dead letters, order, shutdown."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from pydantic import BaseModel

from nativekit import ConfigError, Service, Settings
from nativekit.messaging import MemoryDedupStore, Message
from nativekit.messaging._dedup import ClaimStatus
from nativekit.messaging._wire.memory import MemoryBroker
from nativekit.testing import MessagingHarness, serve
from tests.messaging.conftest import eventually
from tests.support import grouped


class Paid(BaseModel):
    """A test event."""

    order_id: str
    amount: int = 1


def service(**settings: object) -> Service:
    """A service on memory backends with fast retries."""
    values: dict[str, object] = {"consumer_retry_backoff": 0.001, "tracing_enabled": False}
    values.update(settings)
    return Service("shop", settings=Settings(**grouped(values)))


async def test_handler_gets_the_model_and_metadata() -> None:
    """The event is validated into the annotated model; Message carries key, headers, offset."""
    svc = service()
    seen: list[tuple[Paid, Message]] = []

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid, msg: Message) -> None:
        seen.append((event, msg))

    async with MessagingHarness(svc) as harness:
        delivery = await harness.deliver(
            "payments", Paid(order_id="o-1", amount=5), key="o-1", headers={"x-tenant": "acme"}
        )
    assert delivery.outcome == "processed"
    event, msg = seen[0]
    assert event == Paid(order_id="o-1", amount=5)
    assert msg.key == b"o-1"
    assert msg.header("x-tenant") == "acme"
    assert msg.event_type == "Paid"
    assert msg.header("content-type") == "application/json"
    assert msg.message_id and msg.fencing_token > 0 and msg.attempt == 1


async def test_same_message_id_twice_sequentially_has_one_effect() -> None:
    """A redelivered message id is skipped as a duplicate."""
    svc = service()
    effects: Counter[str] = Counter()

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        effects[event.order_id] += 1

    async with MessagingHarness(svc) as harness:
        first = await harness.deliver("payments", Paid(order_id="o-1"), message_id="m-1")
        second = await harness.deliver("payments", Paid(order_id="o-1"), message_id="m-1")
    assert (first.outcome, second.outcome) == ("processed", "duplicate")
    assert effects["o-1"] == 1


async def test_same_message_id_twice_concurrently_has_one_effect() -> None:
    """Two copies in flight at once on different partitions: one runs, the other waits, skips."""
    svc = service()
    effects: Counter[str] = Counter()
    release = asyncio.Event()

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        effects[event.order_id] += 1
        await release.wait()

    async with MessagingHarness(svc, partitions=4) as harness:
        copies = [
            asyncio.create_task(
                harness.deliver("payments", Paid(order_id="o-1"), key=k, message_id="m-1")
            )
            for k in ("a", "b")  # different keys: different partitions, handled concurrently
        ]
        await eventually(lambda: effects["o-1"] == 1, what="first copy running")
        release.set()
        outcomes = sorted(d.outcome for d in await asyncio.gather(*copies))
    assert outcomes == ["duplicate", "processed"]
    assert effects["o-1"] == 1


async def test_poison_message_goes_to_dead_letter_topic_and_partition_moves_on() -> None:
    """Undecodable and invalid payloads are dead-lettered at once with the reason."""
    svc = service()
    handled: list[str] = []

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        handled.append(event.order_id)

    async with MessagingHarness(svc) as harness:
        bad_json = await harness.deliver("payments", b"{not json")
        invalid = await harness.deliver("payments", b'{"order_id": 5}')
        good = await harness.deliver("payments", Paid(order_id="o-2"))
        dead = harness.dead_letters("payments")
        await eventually(
            lambda: harness.broker.committed_offsets("orders") == {("payments", 0): 3},
            what="commit past the dead letters",
        )
    assert (bad_json.outcome, invalid.outcome, good.outcome) == (
        "dead_lettered",
        "dead_lettered",
        "processed",
    )
    assert handled == ["o-2"]
    assert [m.value for m in dead] == [b"{not json", b'{"order_id": 5}']
    assert dead[1].header("dlq-error-type") == "DecodeError"
    assert "order_id" in (dead[1].header("dlq-error-message") or "")
    assert dead[0].header("dlq-original-topic") == "payments"
    assert dead[0].header("dlq-original-offset") == "0"
    assert dead[0].header("dlq-group") == "orders"
    assert dead[0].header("dlq-attempts") == "0"
    assert dead[0].header("dlq-time")


async def test_failing_handler_is_retried_then_dead_lettered() -> None:
    """Handler errors are retried with backoff, then dead-lettered with the attempt count."""
    svc = service(consumer_retries=2)
    attempts: list[int] = []

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid, msg: Message) -> None:
        attempts.append(msg.attempt)
        if event.order_id == "bad":
            raise RuntimeError("card declined")

    async with MessagingHarness(svc) as harness:
        delivery = await harness.deliver("payments", Paid(order_id="bad"))
        after = await harness.deliver("payments", Paid(order_id="ok"))
        [dead] = harness.dead_letters("payments")
        text = svc.metrics.registry.get_sample_value(
            "nativekit_messages_consumed_total",
            {"service": "shop", "topic": "payments", "group": "orders", "outcome": "retried"},
        )
    assert delivery.outcome == "dead_lettered" and delivery.attempts == 3
    assert after.outcome == "processed"
    assert attempts == [1, 2, 3, 1]
    assert dead.header("dlq-error-type") == "RuntimeError"
    assert dead.header("dlq-error-message") == "card declined"
    assert dead.header("dlq-attempts") == "3"
    assert text == 2


async def test_transient_failure_recovers_within_retries() -> None:
    """A handler that fails once and then succeeds is processed, not dead-lettered."""
    svc = service()
    calls = 0

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("flaky")

    async with MessagingHarness(svc) as harness:
        delivery = await harness.deliver("payments", Paid(order_id="o"))
    assert delivery.outcome == "processed" and delivery.attempts == 2



async def test_dead_letters_are_counted_from_zero_once_the_consumer_runs() -> None:
    """A running consumer exposes ``outcome="dead_lettered"`` at 0 before any dead letter,
    so ``increase()`` in an alert sees the first one (a series born at 1 shows no increase)."""
    svc = service()

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        raise RuntimeError("never")

    labels = {"service": "shop", "topic": "payments", "group": "orders"}
    sample = svc.metrics.registry.get_sample_value
    name = "nativekit_messages_consumed_total"
    assert sample(name, {**labels, "outcome": "dead_lettered"}) is None
    async with serve(svc):
        assert sample(name, {**labels, "outcome": "dead_lettered"}) == 0.0
        assert sample(name, {**labels, "outcome": "processed"}) is None

async def test_non_retryable_error_is_dead_lettered_at_once() -> None:
    """Exceptions listed as non-retryable skip the retries."""
    svc = service()
    calls = 0

    @svc.consumer("payments", group="orders", non_retryable=[KeyError], dead_letter_topic="dead")
    async def on_paid(event: Paid) -> None:
        nonlocal calls
        calls += 1
        raise KeyError("no such order")

    async with MessagingHarness(svc) as harness:
        delivery = await harness.deliver("payments", Paid(order_id="o"))
        [dead] = harness.dead_letters("dead")
    assert delivery.outcome == "dead_lettered" and calls == 1
    assert dead.header("dlq-error-type") == "KeyError"


async def test_dead_lettered_message_is_not_handled_again() -> None:
    """A redelivered dead-lettered message id is skipped."""
    svc = service(consumer_retries=0)
    calls = 0

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("nope")

    async with MessagingHarness(svc) as harness:
        await harness.deliver("payments", Paid(order_id="o"), message_id="m")
        again = await harness.deliver("payments", Paid(order_id="o"), message_id="m")
    assert again.outcome == "duplicate" and calls == 1


async def test_business_dedup_key() -> None:
    """dedup_key derives the idempotency key from the event instead of the message id."""
    svc = service()
    effects: list[str] = []

    @svc.consumer("payments", group="orders", dedup_key=lambda m: (m.value or b"").decode()[:20])
    async def on_paid(event: Paid) -> None:
        effects.append(event.order_id)

    async with MessagingHarness(svc) as harness:
        await harness.deliver("payments", Paid(order_id="o-1"))
        second = await harness.deliver("payments", Paid(order_id="o-1"))
    assert second.outcome == "duplicate" and effects == ["o-1"]


async def test_not_idempotent_consumer_handles_every_copy() -> None:
    """idempotent=False handles redeliveries (at-least-once)."""
    svc = service()
    effects: list[str] = []

    @svc.consumer("payments", group="orders", idempotent=False)
    async def on_paid(event: Paid) -> None:
        effects.append(event.order_id)

    async with MessagingHarness(svc) as harness:
        await harness.deliver("payments", Paid(order_id="o"), message_id="m")
        await harness.deliver("payments", Paid(order_id="o"), message_id="m")
    assert effects == ["o", "o"]


async def test_per_key_order_is_kept_under_concurrency() -> None:
    """With concurrency, messages of one key run in order while keys overlap."""
    svc = service()
    order: dict[str, list[int]] = {}
    running = 0
    peak = 0

    @svc.consumer("payments", group="orders", concurrency=4)
    async def on_paid(event: Paid) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002 * (event.amount % 3))
        order.setdefault(event.order_id, []).append(event.amount)
        running -= 1

    async with MessagingHarness(svc) as harness:
        for n in range(30):
            for key in ("a", "b", "c", "d"):
                await svc.publish("payments", Paid(order_id=key, amount=n), key=key)
        await eventually(lambda: sum(len(v) for v in order.values()) == 120, what="all handled")
        await eventually(
            lambda: harness.broker.committed_offsets("orders") == {("payments", 0): 120},
            what="everything committed",
        )
    assert all(v == list(range(30)) for v in order.values())
    assert peak > 1


async def test_sequential_by_default() -> None:
    """Without concurrency one partition runs one message at a time, in offset order."""
    svc = service()
    seen: list[int] = []
    running = 0
    peak = 0

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        seen.append(event.amount)
        running -= 1

    async with MessagingHarness(svc):
        for n in range(20):
            await svc.publish("payments", Paid(order_id=str(n), amount=n))
        await eventually(lambda: len(seen) == 20, what="all handled")
    assert seen == list(range(20)) and peak == 1


async def test_graceful_shutdown_commits_finished_work() -> None:
    """On stop, finished messages are committed; the one still running is not."""
    svc = service(consumer_drain_timeout=0.2)
    broker = MemoryBroker()
    svc.messaging.use_broker(broker)
    gate = asyncio.Event()
    handled: list[int] = []

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        if event.amount == 3:
            await gate.wait()  # never released: still running at shutdown
        handled.append(event.amount)

    svc.messaging.use_broker(broker)
    async with serve(svc):
        for n in range(5):
            await svc.publish("payments", Paid(order_id="o", amount=n))
        await eventually(lambda: handled == [0, 1, 2], what="first three handled")
    assert broker.committed_offsets("orders") == {("payments", 0): 3}


async def test_dedup_store_down_fails_closed_and_readiness_reports_it() -> None:
    """With the dedup store unreachable nothing is processed or committed; readiness fails."""
    svc = service()
    store = MemoryDedupStore()
    svc.messaging.use_dedup_store(lambda ns: store)
    broker = MemoryBroker()
    svc.messaging.use_broker(broker)
    handled: list[str] = []

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        handled.append(event.order_id)

    svc.messaging.use_dedup_store(lambda ns: store)
    svc.messaging.use_broker(broker)
    async with serve(svc) as client:
        store.available = False
        await svc.publish("payments", Paid(order_id="o-1"))
        await eventually(
            lambda: svc.metrics.registry.get_sample_value(
                "nativekit_dedup_errors_total",
                {"service": "shop", "group": "orders", "operation": "claim"},
            ),
            what="a counted dedup error",
        )
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "dedup" in ready.text or "switched off" in ready.text
        assert handled == [] and broker.committed_offsets("orders") == {}
        store.available = True
        await eventually(lambda: handled == ["o-1"], what="processing after recovery")
        await eventually(
            lambda: broker.committed_offsets("orders") == {("payments", 0): 1}, what="commit"
        )


async def test_duplicate_waits_for_a_live_owner_and_takes_over_after_its_lease() -> None:
    """A copy claimed elsewhere (IN_PROGRESS) is not skipped: it waits, then runs once the
    owner's lease expires."""
    svc = service(dedup_lease=0.3)
    store = MemoryDedupStore()
    effects: list[str] = []

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        effects.append(event.order_id)

    [foreign] = await store.claim_many(["m-1"], lease=0.3)  # a worker that then died
    assert foreign.status is ClaimStatus.CLAIMED
    started = time.monotonic()
    async with MessagingHarness(svc, dedup_store=store) as harness:
        delivery = await harness.deliver("payments", Paid(order_id="o-1"), message_id="m-1")
    assert delivery.outcome == "processed" and effects == ["o-1"]
    assert time.monotonic() - started >= 0.25  # it waited for the lease, did not skip


async def test_readiness_reports_assigned_partitions() -> None:
    """The consumer check passes with the number of assigned partitions."""
    svc = service()

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        return None

    async with serve(svc) as client:
        body = (await client.get("/readyz")).json()
    check = body["checks"][
        "consumer:orders:test_readiness_reports_assigned_partitions.<locals>.on_paid"
    ][0]
    assert check["status"] == "pass" and check["observedValue"] >= 1


def test_handler_signature_errors_say_what_to_write() -> None:
    """Sync handlers, missing or wrong annotations are ConfigErrors naming the fix."""
    svc = service()
    with pytest.raises(ConfigError, match="async def"):

        @svc.consumer("payments")
        def sync(event: Paid) -> None: ...

    with pytest.raises(ConfigError, match="pydantic model"):

        @svc.consumer("payments")
        async def untyped(event) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(ConfigError, match="event parameter"):

        @svc.consumer("payments")
        async def only_meta(msg: Message) -> None: ...

    with pytest.raises(ConfigError, match="topic name"):
        svc.consumer("bad topic!")


def test_retention_shorter_than_redelivery_horizon_is_rejected() -> None:
    """DONE marks must outlive the redelivery horizon."""
    svc = service(dedup_retention=60, redelivery_horizon=3600)
    with pytest.raises(ConfigError, match="REDELIVERY_HORIZON"):
        svc.consumer("payments")
    with pytest.raises(ConfigError, match="retention"):
        service().consumer("payments", retain=10)


async def test_bytes_handler_gets_raw_payload() -> None:
    """A handler annotated with bytes receives the raw value."""
    svc = service()
    seen: list[bytes] = []

    @svc.consumer("raw", group="g")
    async def on_raw(payload: bytes) -> None:
        seen.append(payload)

    async with MessagingHarness(svc) as harness:
        await harness.deliver("raw", b"\x00\x01")
    assert seen == [b"\x00\x01"]


async def test_consumer_declared_after_startup_is_rejected() -> None:
    """Consumers join at startup; declaring one later is a ConfigError."""
    svc = service()
    async with serve(svc):
        svc.messaging  # noqa: B018 - created after startup
        with pytest.raises(ConfigError, match="before the service starts"):

            @svc.consumer("late", group="g")
            async def late(event: Paid) -> None: ...


@pytest.mark.parametrize(("level", "expected"), [("DEBUG", 1), ("INFO", 0)])
async def test_debug_level_logs_each_handled_message(
    level: str, expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """At DEBUG every handled message gets a message.handled line (the inline path, which
    skips it, is off then); at INFO there is none."""
    import json

    svc = service(log_level=level, log_format="json")

    @svc.consumer("payments", group="orders")
    async def on_paid(event: Paid) -> None:
        pass

    async with MessagingHarness(svc) as harness:
        delivery = await harness.deliver("payments", Paid(order_id="o-1"), message_id="m-1")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    handled = [x for x in lines if x["event"] == "message.handled"]
    assert delivery.outcome == "processed"
    assert len(handled) == expected, lines
    if expected:
        assert handled[0]["message_id"] == "m-1" and handled[0]["attempt"] == 1
