"""Stopping background tasks: their cancellation is swallowed, the caller's is not."""

from __future__ import annotations

import asyncio

from nativekit._lifecycle import cancel_and_wait


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
