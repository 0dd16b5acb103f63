"""Flushes of DONE marks: a second one starts while the first waits for the dedup store,
never more than two at once, and stopping waits for those in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import BaseModel

from nativekit import Service, Settings
from nativekit.messaging import MemoryBroker, MemoryDedupStore
from nativekit.messaging._dedup import Claim, ClaimStatus, FinalState
from tests.messaging.conftest import eventually
from tests.support import grouped


class Job(BaseModel):
    """The event."""

    n: int


class HeldFinishes(MemoryDedupStore):
    """A dedup store whose finishes wait until ``release`` is set; counts those waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting = 0
        self.most_waiting = 0
        self.finished: list[str] = []

    async def finish_many(
        self, claims: Sequence[Claim], *, retain: float, state: FinalState = FinalState.DONE
    ) -> list[bool]:
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        try:
            await self.release.wait()
        finally:
            self.waiting -= 1
        self.finished += [c.key for c in claims]
        return await super().finish_many(claims, retain=retain, state=state)


def consuming(store: HeldFinishes, broker: MemoryBroker) -> Service:
    """A memory service whose consumer fetches one message at a time into ``store``."""
    settings = {"consumer_fetch_max_records": 1, "tracing_enabled": False}
    svc = Service("flushes", settings=Settings(**grouped(settings)))

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None:
        """Handles at once."""

    svc.messaging.use_broker(broker)
    svc.messaging.use_dedup_store(lambda ns: store)
    return svc


async def test_items_handled_while_a_flush_waits_go_out_in_a_second_one() -> None:
    """While the first flush waits for the store, the message handled next is flushed by
    a second one, without waiting for the first to end."""
    store, broker = HeldFinishes(), MemoryBroker()
    svc = consuming(store, broker)
    await svc.startup(hook_sigterm=False)
    try:
        await svc.publish("jobs", Job(n=1), message_id="m-1")
        await eventually(lambda: store.waiting == 1, within=3, what="the first flush")
        await svc.publish("jobs", Job(n=2), message_id="m-2")
        await eventually(lambda: store.waiting == 2, within=3, what="a second flush")
        store.release.set()
        await eventually(lambda: sorted(store.finished) == ["m-1", "m-2"], within=3)
        await eventually(lambda: sum(broker.committed_offsets("g").values()) == 2, within=3)
    finally:
        store.release.set()
        await svc.shutdown()


async def test_no_more_than_two_flushes_at_once() -> None:
    """Messages handled while two flushes wait are flushed after one of them ended."""
    store, broker = HeldFinishes(), MemoryBroker()
    svc = consuming(store, broker)
    await svc.startup(hook_sigterm=False)
    try:
        for n in range(2):
            await svc.publish("jobs", Job(n=n), message_id=f"m-{n}")
            await eventually(lambda n=n: store.waiting == n + 1, within=3, what="a flush")
        for n in range(2, 5):
            await svc.publish("jobs", Job(n=n), message_id=f"m-{n}")
        await asyncio.sleep(0.2)
        assert store.waiting == 2
        store.release.set()
        await eventually(lambda: len(store.finished) == 5, within=3, what="every mark")
        await eventually(lambda: sum(broker.committed_offsets("g").values()) == 5, within=3)
    finally:
        store.release.set()
        await svc.shutdown()
    assert store.most_waiting == 2


async def test_stopping_waits_for_the_flushes_in_flight() -> None:
    """A consumer stopped while two flushes wait for the store finishes them and commits
    their messages before it leaves the group."""
    store, broker = HeldFinishes(), MemoryBroker()
    svc = consuming(store, broker)
    await svc.startup(hook_sigterm=False)
    for n in range(2):
        await svc.publish("jobs", Job(n=n), message_id=f"m-{n}")
        await eventually(lambda n=n: store.waiting == n + 1, within=3, what="a flush")
    stopping = asyncio.create_task(svc.shutdown())
    await asyncio.sleep(0.1)
    assert not stopping.done()
    store.release.set()
    await asyncio.wait_for(stopping, 5)
    assert sorted(store.finished) == ["m-0", "m-1"]
    assert sum(broker.committed_offsets("g").values()) == 2


class FailingFirstFinish(MemoryDedupStore):
    """A dedup store whose first finish fails with an unexpected error."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def finish_many(
        self, claims: Sequence[Claim], *, retain: float, state: FinalState = FinalState.DONE
    ) -> list[bool]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in the store")
        return await super().finish_many(claims, retain=retain, state=state)


async def test_a_failed_flush_is_flushed_again_by_the_restarted_loop() -> None:
    """A flush that fails with an unexpected error puts its items back; the finish loop,
    restarted by its supervisor, flushes them again and their offsets are committed."""
    store, broker = FailingFirstFinish(), MemoryBroker()
    svc = Service("flushes", settings=Settings(**grouped({"tracing_enabled": False})))

    @svc.consumer("jobs", group="g")
    async def on_job(event: Job) -> None:
        """Handles at once."""

    svc.messaging.use_broker(broker)
    svc.messaging.use_dedup_store(lambda ns: store)
    await svc.startup(hook_sigterm=False)
    try:
        await svc.publish("jobs", Job(n=1), message_id="m-1")
        await eventually(lambda: sum(broker.committed_offsets("g").values()) == 1, within=10)
    finally:
        await svc.shutdown()
    assert store.calls == 2
    [claim] = await store.claim_many(["m-1"], lease=5)
    assert claim.status is ClaimStatus.DONE
