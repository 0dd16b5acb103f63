"""Start order by phase, restarts, and stopping background tasks (their cancellation is
swallowed, the caller's is not)."""

from __future__ import annotations

import asyncio
import signal
from types import FrameType
from typing import Any

import pytest

import nativekit
from nativekit._lifecycle import Lifecycle, Phase, cancel_all, cancel_and_wait


async def forever() -> None:
    """A background loop that only ends when cancelled, after a moment of cleanup."""
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0.05)  # e.g. closing a connection


async def test_cancel_and_wait_ends_the_task_and_returns() -> None:
    """The task is cancelled and awaited; the caller carries on normally."""
    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_a_caller_cancelled_while_waiting_is_cancelled_too() -> None:
    """Cancelling the stopper while it waits for the task does not get swallowed
    (a shutdown that was itself cancelled stops, rather than carrying on)."""
    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    after: list[str] = []

    async def stopper() -> None:
        await cancel_and_wait(task)
        after.append("carried on")

    stopping = asyncio.create_task(stopper())
    await asyncio.sleep(0.01)  # the task is cleaning up; the stopper waits for it
    stopping.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
    assert stopping.cancelled() and after == []
    await asyncio.gather(task, return_exceptions=True)


async def test_a_lost_cancellation_is_asked_again() -> None:
    """A task that lost its cancellation (Python 3.11's ``wait_for`` can return the inner
    result instead, gh-86296) and loops on is cancelled again until it ends."""
    lost: list[int] = []

    async def loop_that_loses_one() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost.append(1)  # swallowed, as the race does: the loop carries on

    task = asyncio.create_task(loop_that_loses_one())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, again_after=0.05), 5)
    assert task.cancelled() and lost == [1]


async def test_the_error_a_cancelled_task_ended_with_is_raised() -> None:
    """A task that ends with an error of its own while being cancelled reports it."""

    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("cleanup failed")

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)


async def test_phases_start_in_order_and_stop_in_reverse() -> None:
    """Entries start phase by phase (registration order within one) and stop in reverse,
    whatever order they were registered in."""
    calls: list[str] = []

    def entry(name: str) -> dict[str, Any]:
        async def start() -> None:
            calls.append(f"start {name}")

        async def stop() -> None:
            calls.append(f"stop {name}")

        return {"start": start, "stop": stop}

    lifecycle = Lifecycle("svc")
    lifecycle.add("relay", phase=Phase.RELAY, **entry("relay"))
    lifecycle.add("hook-1", **entry("hook-1"))
    lifecycle.add("sagas", phase=Phase.SAGAS, **entry("sagas"))
    lifecycle.add("redis", phase=Phase.BACKENDS, **entry("redis"))
    lifecycle.add("consumers", phase=Phase.CONSUMERS, **entry("consumers"))
    lifecycle.add("hook-2", **entry("hook-2"))
    await lifecycle.start()
    await lifecycle.stop()
    order = ["redis", "hook-1", "hook-2", "consumers", "sagas", "relay"]
    assert calls == [f"start {n}" for n in order] + [f"stop {n}" for n in reversed(order)]


async def test_application_hooks_run_before_consumers_and_saga_recovery() -> None:
    """on_startup runs before consumers and saga recovery start; on_shutdown after they
    stopped (so what they call is there while they run)."""
    svc = nativekit.Service("phased", settings=nativekit.Settings(_env_file=None))
    saga = svc.saga("ship")

    @saga.step()
    async def ship(ctx: nativekit.SagaContext[Any]) -> None:
        return None

    @svc.consumer("phased.events")
    async def on_event(event: bytes) -> None:
        return None

    seen: list[tuple[str, bool, bool]] = []
    consumer = svc.messaging.consumers[0]

    @svc.on_startup
    async def up() -> None:
        seen.append(("up", svc.sagas.started, consumer.running))

    @svc.on_shutdown
    async def down() -> None:
        seen.append(("down", svc.sagas.started, consumer.running))

    await svc.startup(hook_sigterm=False)
    assert svc.sagas.started and consumer.running
    await svc.shutdown()
    assert seen == [("up", False, False), ("down", False, False)]


async def test_a_service_started_again_does_not_pile_up_hooks_or_signal_handlers() -> None:
    """Start, stop, start, stop: each hook runs once per start, and SIGTERM is hooked once
    per start and handed back at shutdown."""

    def server_handler(signum: int, frame: FrameType | None) -> None:
        """Stands in for uvicorn's handler."""

    previous = signal.signal(signal.SIGTERM, server_handler)
    try:
        svc = nativekit.Service("restarted", settings=nativekit.Settings(_env_file=None))
        starts: list[int] = []

        @svc.on_startup
        async def up() -> None:
            starts.append(1)

        for _ in range(2):
            await svc.startup()
            assert signal.getsignal(signal.SIGTERM) is not server_handler  # the drain hook
            await svc.shutdown()
            assert signal.getsignal(signal.SIGTERM) is server_handler
        assert starts == [1, 1]
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_cancel_all_ends_every_task_and_keeps_their_errors_quiet() -> None:
    """A task that lost its cancellation is cancelled again; one that fails on the way out
    does not fail the stop (a consumer stopping its loops)."""
    lost: list[int] = []

    async def loses_one() -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost.append(1)

    async def fails() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("cleanup failed")

    tasks = [asyncio.create_task(loses_one()), asyncio.create_task(fails())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all(tasks, again_after=0.05), 5)
    assert tasks[0].cancelled() and lost == [1]
    assert isinstance(tasks[1].exception(), RuntimeError)
