"""Edge cases of the consumer: lease renewal, broker failures, stopping while blocked."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from pydantic import BaseModel

from nativekit import Service, Settings
from nativekit.backends.kafka._broker import KafkaBroker
from nativekit.errors import BackendUnavailable
from nativekit.messaging import MemoryBroker, MemoryDedupStore, Message
from nativekit.messaging._dedup import Claim, ClaimStatus
from nativekit.messaging._wire.memory import MemoryGroupConsumer
from nativekit.testing import MessagingHarness, serve
from tests.messaging.conftest import eventually
from tests.support import grouped


class Job(BaseModel):
    """The event."""

    n: int


def service(**settings: object) -> Service:
    """A memory service with fast retries."""
    values: dict[str, object] = {"consumer_retry_backoff": 0.001, "tracing_enabled": False}
    values.update(settings)
    return Service("edges", settings=Settings(**grouped(values)))


async def test_long_handler_keeps_its_lease() -> None:
    """A handler running longer than the lease renews it: a second worker sees BUSY."""
    svc = service(dedup_lease=0.3)
    store = MemoryDedupStore()
    started, release = asyncio.Event(), asyncio.Event()

    @svc.consumer("jobs", group="g")
    async def slow(event: Job) -> None:
        started.set()
        await release.wait()

    async with MessagingHarness(svc, dedup_store=store) as harness:
        delivery = asyncio.create_task(harness.deliver("jobs", Job(n=1), message_id="j-1"))
        await started.wait()
        await asyncio.sleep(0.7)  # more than two leases
        [other] = await store.claim_many(["j-1"], lease=1)
        release.set()
        assert (await delivery).outcome == "processed"
    assert other.status is ClaimStatus.BUSY


async def test_fetch_failure_fails_readiness_until_it_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broker that fails fetches makes the consumer's readiness check fail."""
    svc = service()
    broker = MemoryBroker()
    svc.messaging.use_broker(broker)
    failing = True
    fetch = MemoryGroupConsumer.fetch

    async def flaky(self: MemoryGroupConsumer, *, wait: float, max_records: int) -> list:  # type: ignore[type-arg]
        if failing:
            raise BackendUnavailable("broker gone (test)")
        return await fetch(self, wait=wait, max_records=max_records)

    monkeypatch.setattr(MemoryGroupConsumer, "fetch", flaky)
    handled: list[int] = []

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None:
        handled.append(event.n)

    svc.messaging.use_broker(broker)
    async with serve(svc) as client:
        await eventually(lambda: svc.messaging.consumers[0]._error is not None)
        failed = await client.get("/readyz")
        assert failed.status_code == 503 and "broker gone" in failed.text
        failing = False
        await svc.publish("jobs", Job(n=1))
        await eventually(lambda: handled == [1], within=5)


async def test_stop_while_the_store_is_down_gives_up_cleanly() -> None:
    """Stopping while claims cannot be made neither processes nor commits anything."""
    svc = service(consumer_drain_timeout=0.2)
    store = MemoryDedupStore()
    broker = MemoryBroker()
    handled: list[int] = []

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None:
        handled.append(event.n)

    svc.messaging.use_broker(broker)
    svc.messaging.use_dedup_store(lambda ns: store)
    async with serve(svc):
        store.available = False
        await svc.publish("jobs", Job(n=1))
        await eventually(lambda: svc.messaging.consumers[0].marks.error is not None)
    assert handled == [] and broker.committed_offsets("g") == {}


async def test_revoke_with_concurrency_commits_only_the_finished_prefix() -> None:
    """A second member joining takes partitions; nothing is lost or handled twice."""
    broker = MemoryBroker(default_partitions=2)
    store = MemoryDedupStore()
    seen: list[int] = []

    def member() -> Service:
        svc = service()
        svc.messaging.use_broker(broker)
        svc.messaging.use_dedup_store(lambda ns: store)

        @svc.consumer("jobs", group="g", concurrency=3)
        async def on_job(event: Job) -> None:
            await asyncio.sleep(0.001)
            seen.append(event.n)

        return svc

    a, b = member(), member()
    await a.startup(hook_sigterm=False)
    for n in range(100):
        await a.publish("jobs", Job(n=n), key=str(n))
    await b.startup(hook_sigterm=False)
    for n in range(100, 200):
        await a.publish("jobs", Job(n=n), key=str(n))
    await eventually(lambda: len(set(seen)) == 200, within=10)
    await b.shutdown()
    await a.shutdown()
    assert sorted(seen) == list(range(200))
    assert sum(broker.committed_offsets("g").values()) == 200


async def test_unreachable_kafka_is_backend_unavailable() -> None:
    """A Kafka broker on a closed port raises BackendUnavailable naming the servers."""
    settings = Settings(connect_timeout_seconds=0.5, kafka={"url": "kafka://127.0.0.1:1"})
    broker = KafkaBroker(settings)
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1"):
        await broker.start()
    with pytest.raises(BackendUnavailable):
        await broker.create_topics({"x": 1})
    await broker.aclose()


async def test_later_copy_claimed_first_in_the_same_partition_does_not_block() -> None:
    """Two copies of one message in one partition, fetched in two batches whose claims
    answer out of order: the later copy wins the claim, the earlier one (ahead of it in
    the lane) takes the claim over instead of waiting for the lease; one effect."""

    class SlowFirstClaim(MemoryDedupStore):
        calls = 0

        async def claim_many(self, keys, *, lease):  # type: ignore[no-untyped-def]
            SlowFirstClaim.calls += 1
            if SlowFirstClaim.calls == 1:
                await asyncio.sleep(0.2)  # the second batch's claim goes first
            return await super().claim_many(keys, lease=lease)

    svc = service(consumer_fetch_max_records=1, dedup_lease=30)
    broker = MemoryBroker()
    handled: list[int] = []

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None:
        handled.append(event.n)

    svc.messaging.use_broker(broker)
    store = SlowFirstClaim()
    svc.messaging.use_dedup_store(lambda ns: store)
    await svc.publish("jobs", Job(n=1), message_id="dup")
    await svc.publish("jobs", Job(n=2), message_id="dup")
    async with serve(svc):
        await eventually(lambda: sum(broker.committed_offsets("g").values()) == 2, within=5)
    assert handled == [1]
    assert SlowFirstClaim.calls >= 2


async def test_commits_are_spaced_by_the_commit_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages finishing one at a time share commits: at most one per interval, and
    the last finished offset is still committed."""
    commits: list[float] = []
    real_commit = MemoryGroupConsumer.commit

    async def counting(self, offsets):  # type: ignore[no-untyped-def]
        commits.append(asyncio.get_running_loop().time())
        await real_commit(self, offsets)

    monkeypatch.setattr(MemoryGroupConsumer, "commit", counting)
    svc = service(consumer_fetch_max_records=1, consumer_commit_interval=0.2)
    broker = MemoryBroker()

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None:
        await asyncio.sleep(0.01)  # one flush per message

    svc.messaging.use_broker(broker)
    for n in range(40):
        await svc.publish("jobs", Job(n=n))
    async with serve(svc):
        await eventually(lambda: sum(broker.committed_offsets("g").values()) == 40, within=5)
        assert commits, "nothing committed"
        spans = [b - a for a, b in itertools.pairwise(commits)]
    assert len(commits) <= 6  # 40 messages over ~0.4 s: two or three commits, not 40
    assert all(gap >= 0.19 for gap in spans), spans


class SlowClaimStore(MemoryDedupStore):
    """A dedup store whose claims hang (a slow Redis) while ``hanging`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.hanging = True
        self.claiming = asyncio.Event()

    async def claim_many(self, keys: Sequence[str], *, lease: float) -> list[Claim]:
        if self.hanging:
            self.claiming.set()
            await asyncio.Event().wait()
        return await super().claim_many(keys, lease=lease)


async def test_a_consumer_stopped_while_claiming_a_batch_has_room_again_after_a_restart() -> None:
    """Stopping while the dedup store answers a batch's claim gives that batch up: the
    consumer started again (max_in_flight=1) has room, fetches the message again and
    handles it."""
    svc = service()
    store = SlowClaimStore()
    svc.messaging.use_broker(MemoryBroker())
    svc.messaging.use_dedup_store(lambda ns: store)
    handled: list[int] = []

    @svc.consumer("jobs", group="g", max_in_flight=1)
    async def on_job(event: Job) -> None:
        handled.append(event.n)

    await svc.startup(hook_sigterm=False)
    await svc.publish("jobs", Job(n=1))
    await asyncio.wait_for(store.claiming.wait(), 2)
    await svc.shutdown()
    store.hanging = False
    await svc.startup(hook_sigterm=False)
    try:
        await eventually(lambda: handled == [1], within=3, what="the message handled")
    finally:
        await svc.shutdown()


async def test_a_backend_outage_is_waited_out_not_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler that finds Redis or Kafka unavailable more often than its retries is
    tried again until the backend is back: the message is handled, not dead-lettered,
    and a plain error afterwards still gets the full retries."""
    from nativekit.messaging._consume import pipeline

    monkeypatch.setattr(pipeline, "OUTAGE_RETRY", 0.01)
    svc = service(consumer_retries=2)
    calls: list[int] = []

    @svc.consumer("jobs", group="g")
    async def needs_redis(event: Job, msg: Message) -> None:
        calls.append(msg.attempt)
        if len(calls) <= 6:
            raise BackendUnavailable("Redis did not answer (test)")
        if len(calls) <= 8:
            raise RuntimeError("a plain failure")

    async with MessagingHarness(svc) as harness:
        delivery = await harness.deliver("jobs", Job(n=1))
        dead = harness.dead_letters("jobs")
    assert delivery.outcome == "processed"
    assert dead == []
    assert calls == [1, 1, 1, 1, 1, 1, 1, 2, 3]
