"""The saga runtime's recovery and renewal loops restart after an unexpected error (logged
and counted); the outbox relay too, and it keeps one saga's messages in order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from nativekit import Settings
from nativekit._supervisor import Supervisor
from nativekit._telemetry.logging import configure_logging
from nativekit.saga import MemorySagaStore, Saga, SagaContext, SagaRuntime, SagaStatus
from nativekit.saga._store.outbox import MemoryOutbox, OutboxEntry, OutboxRelay
from nativekit.testing import capture_logs
from tests.faulty import FailOnce, Injected
from tests.messaging.conftest import eventually


def restarts(registry: CollectorRegistry, task: str) -> float:
    """Restarts of ``task`` counted on ``registry``."""
    value = registry.get_sample_value(
        "nativekit_background_task_restarts_total", {"service": "t", "task": task}
    )
    return value or 0.0


def one_step_saga(release: asyncio.Event) -> Saga[dict[str, int]]:
    """One step that waits until released."""
    saga: Saga[dict[str, int]] = Saga("held", input=dict[str, int])

    @saga.step()
    async def hold(ctx: SagaContext[dict[str, int]]) -> None:
        await release.wait()

    return saga


@pytest.mark.parametrize(
    ("task", "method"), [("saga-recovery", "claim_expired"), ("saga-renewal", "renew")]
)
async def test_a_failed_saga_loop_restarts(task: str, method: str) -> None:
    """An unexpected store error in the recovery or renewal loop restarts it: counted,
    logged with the error, and the loop runs again (a saga still completes)."""
    configure_logging(Settings(), "t")
    registry = CollectorRegistry()
    store: Any = FailOnce(MemorySagaStore(), method)
    runtime = SagaRuntime(
        "t",
        store,
        lease=1.5,
        recovery_interval=0.05,
        tracing=False,
        supervisor=Supervisor("t", registry),
    )
    release = asyncio.Event()
    saga = one_step_saga(release)
    runtime.declare(saga)
    with capture_logs() as logs:
        await runtime.startup()
        try:
            handle = await runtime.start(saga, {"n": 1})
            await eventually(lambda: restarts(registry, task) == 1, what=f"{task} restarted")
            await eventually(lambda: store.calls >= 3, what=f"{method} called again")
            release.set()
            assert (await handle.wait(5)).status is SagaStatus.COMPLETED
        finally:
            await runtime.shutdown(grace=1)
    [logged] = [e for e in logs if e["event"] == "background_task.restarted"]
    assert logged["task"] == task and logged["error"] == f"Injected: {method} failed (injected)"


class FlakyPublisher:
    """Records what it publishes; fails the first publish of each id in ``fail``."""

    def __init__(self, fail: set[str]) -> None:
        self.fail = fail
        self.published: list[str] = []

    async def publish(self, topic: str, value: bytes, **options: Any) -> None:
        message_id = options["message_id"]
        if message_id in self.fail:
            self.fail.discard(message_id)
            raise Injected(f"publish of {message_id} failed (injected)")
        self.published.append(message_id)


def entry(entry_id: str, key: str) -> str:
    """An encoded outbox entry."""
    return OutboxEntry(entry_id, "t.events", key, "{}", "Evt", {}, 0.0).encode()


async def test_a_failed_relay_restarts_and_keeps_each_saga_in_order() -> None:
    """A publish failing unexpectedly restarts the relay (counted); the saga whose entry
    failed gets its later entries published only after it, other sagas go on."""
    registry = CollectorRegistry()
    entries = [entry("a1", "saga-a"), entry("b1", "saga-b"), entry("a2", "saga-a")]
    outbox = MemoryOutbox(entries)
    publisher = FlakyPublisher({"a1"})
    relay = OutboxRelay(
        outbox, publisher, service="t", poll_interval=0.05, supervisor=Supervisor("t", registry)
    )
    taken = outbox.read

    async def read(limit: int, saga_ids: Any = None) -> Any:
        batch = await taken(limit, saga_ids)
        if not batch.entries:  # an entry left pending is read again, as from Redis
            outbox._taken.clear()
        return batch

    outbox.read = read  # type: ignore[method-assign]
    await relay.start()
    try:
        await eventually(lambda: len(publisher.published) == 3, what="all published")
    finally:
        await relay.stop()
    assert publisher.published.index("a1") < publisher.published.index("a2")
    assert publisher.published[0] == "b1"
    assert restarts(registry, "outbox-relay") == 1
    assert entries == []


class GatedPublisher:
    """Records what it publishes; holds the publish of ``held`` until ``release`` is set."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.release = asyncio.Event()
        self.published: list[str] = []

    async def publish(self, topic: str, value: bytes, **options: Any) -> None:
        if options["message_id"] == self.held:
            await self.release.wait()
        self.published.append(options["message_id"])


async def test_the_relay_reads_on_while_a_batch_goes_out_keeping_each_key_in_order() -> None:
    """A batch still being published does not hold up the next read: other sagas' entries
    go out meanwhile, and a saga's later entry waits for its earlier one."""
    entries = [entry("a1", "saga-a")]
    outbox = MemoryOutbox(entries)
    publisher = GatedPublisher("a1")
    relay = OutboxRelay(outbox, publisher, service="t")
    assert await relay.relay_once(wait=False) == 1  # a1 in flight, held
    entries += [entry("a2", "saga-a"), entry("b1", "saga-b")]
    assert await relay.relay_once(wait=False) == 2
    # a2 is read with b1 and, unchained, would go out in the same turn (before a1)
    await eventually(lambda: "b1" in publisher.published, what="b1 published")
    publisher.release.set()
    await eventually(lambda: not entries, what="all published and deleted")
    assert publisher.published == ["b1", "a1", "a2"]
    assert relay.published == 3
