"""Lease renewal decisions of the runtime, on the memory store."""

from __future__ import annotations

import asyncio

import pytest

from nativekit import Settings
from nativekit._telemetry.logging import configure_logging
from nativekit.saga import MemorySagaStore, Saga, SagaContext, SagaRuntime, SagaStatus
from nativekit.saga._errors import SagaStateError
from nativekit.saga._store.model import SagaRecord
from nativekit.testing import capture_logs


def blocking_saga(entered: asyncio.Event, release: asyncio.Event) -> Saga[dict[str, int]]:
    """One step that waits until released."""
    saga: Saga[dict[str, int]] = Saga("blocking", input=dict[str, int])

    @saga.step()
    async def hold(ctx: SagaContext[dict[str, int]]) -> None:
        entered.set()
        await release.wait()

    return saga


async def test_renewal_cancels_a_run_whose_saga_another_runner_took() -> None:
    """When another runner claimed the saga, renewal stops the local run at once."""
    entered, release = asyncio.Event(), asyncio.Event()
    store = MemorySagaStore()
    runtime = SagaRuntime("t", store, tracing=False)
    handle = await runtime.start(blocking_saga(entered, release), {"n": 1})
    await entered.wait()
    task = runtime.runs[handle.saga_id][1]
    await store.claim(handle.saga_id, "someone-else", lease=30, force=True)
    await runtime.renew()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert (await runtime.get(handle.saga_id)).status is SagaStatus.RUNNING


async def test_renewal_leaves_alone_a_run_that_just_finished() -> None:
    """A refused renewal of a saga that finished meanwhile does not cancel anything."""
    entered, release = asyncio.Event(), asyncio.Event()
    store = MemorySagaStore()
    runtime = SagaRuntime("t", store, tracing=False)
    handle = await runtime.start(blocking_saga(entered, release), {"n": 1})
    await entered.wait()
    run, _ = runtime.runs[handle.saga_id]
    release.set()
    record = await handle.wait(5)
    # as if the run were still awaiting its final write when renewal looked at it
    still_writing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    runtime.runs[handle.saga_id] = (run, still_writing)  # type: ignore[assignment]
    await runtime.renew()
    assert record.status is SagaStatus.COMPLETED
    assert not still_writing.cancelled()
    still_writing.set_result(None)


async def test_starting_an_id_running_here_keeps_the_running_instance_owned() -> None:
    """A second start of an id this replica runs returns it and leaves the run tracked."""
    entered, release = asyncio.Event(), asyncio.Event()
    runtime = SagaRuntime("t", MemorySagaStore(), tracing=False)
    saga = blocking_saga(entered, release)
    first = await runtime.start(saga, {"n": 1}, saga_id="same")
    await entered.wait()
    task = runtime.runs["same"][1]
    second = await runtime.start(saga, {"n": 2}, saga_id="same")
    assert (first.created, second.created) == (True, False)
    assert runtime.runs["same"][1] is task and not task.done()
    release.set()
    assert (await second.wait(5)).status is SagaStatus.COMPLETED


class SlowCreateStore(MemorySagaStore):
    """A memory store whose first create hangs (a slow Redis) until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = True
        self.creating = asyncio.Event()

    async def create(
        self, record: SagaRecord, *, token: str, lease: float
    ) -> tuple[SagaRecord, bool]:
        if self.hang:
            self.hang = False
            self.creating.set()
            await asyncio.Event().wait()
        return await super().create(record, token=token, lease=lease)


async def test_a_run_cancelled_by_shutdown_while_being_created_is_not_created_afterwards() -> None:
    """Shutdown cancelling a run whose create had not returned tells start() it was not
    stored, and does not store it afterwards (no instance left leased to a stopped runner)."""
    store = SlowCreateStore()
    runtime = SagaRuntime("t", store, tracing=False)
    saga = blocking_saga(asyncio.Event(), asyncio.Event())
    start = asyncio.create_task(runtime.start(saga, {"n": 1}, saga_id="s1"))
    await asyncio.wait_for(store.creating.wait(), 2)
    await runtime.shutdown(grace=0.05)
    with pytest.raises(SagaStateError, match="before it was stored"):
        await start
    assert await store.get("s1") is None


async def test_a_cancelled_wait_for_a_saga_run_elsewhere_leaves_nothing_behind() -> None:
    """Waiting on a saga another replica runs, then cancelling the wait (an HTTP client
    gone), leaves no pending future per saga in the runtime."""
    entered, release = asyncio.Event(), asyncio.Event()
    store = MemorySagaStore()
    running_elsewhere = SagaRuntime("a", store, tracing=False)
    handle = await running_elsewhere.start(blocking_saga(entered, release), {"n": 1})
    await entered.wait()
    here = SagaRuntime("b", store, tracing=False)
    waiting = asyncio.create_task(here.wait(handle.saga_id, 10))
    await asyncio.sleep(0.05)  # polling, between two status reads
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert here._spawned == {}
    release.set()
    assert (await handle.wait(5)).status is SagaStatus.COMPLETED


class SlowFirstCreateStore(MemorySagaStore):
    """A memory store whose first create takes a while (a slow Redis)."""

    def __init__(self) -> None:
        super().__init__()
        self.creating = asyncio.Event()

    async def create(
        self, record: SagaRecord, *, token: str, lease: float
    ) -> tuple[SagaRecord, bool]:
        if not self.creating.is_set():
            self.creating.set()
            await asyncio.sleep(0.2)
        return await super().create(record, token=token, lease=lease)


async def test_a_start_cancelled_while_creating_leaves_the_saga_running_not_orphaned() -> None:
    """Cancelling sagas.start() (a client gone) while the instance is being created
    does not break the run: it is stored and runs to the end, never left leased."""
    configure_logging(Settings(), "t")
    store = SlowFirstCreateStore()
    runtime = SagaRuntime("t", store, tracing=False)
    release = asyncio.Event()
    saga = blocking_saga(asyncio.Event(), release)
    with capture_logs() as logs:
        start = asyncio.create_task(runtime.start(saga, {"n": 1}, saga_id="s1"))
        await asyncio.wait_for(store.creating.wait(), 2)
        start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        release.set()
        record = await runtime.wait("s1", 5)
    assert start.cancelled()
    assert record.status is SagaStatus.COMPLETED
    assert [e for e in logs if e["event"] == "saga.run.crashed"] == []
