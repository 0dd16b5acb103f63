"""A reply that resumes a saga while a start() of the same id is still being stored."""

from __future__ import annotations

import asyncio

from nativekit.saga import SagaRecord, SagaStatus
from nativekit.saga._commands.replies import apply_reply
from nativekit.saga._run.commands import CommandDriver
from nativekit.saga._run.runtime import SagaRuntime
from nativekit.saga._store.memory import MemorySagaStore
from nativekit.saga._store.model import Waiting

from .test_reply_resume import Reserve, _saga


class GatedStore(MemorySagaStore):
    """A memory store whose create() waits at a gate once ``hold`` is set (a slow store)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def create(
        self, record: SagaRecord, *, token: str, lease: float
    ) -> tuple[SagaRecord, bool]:
        if self.hold:
            self.entered.set()
            await self.gate.wait()
        return await super().create(record, token=token, lease=lease)


async def test_a_reply_during_a_repeated_start_neither_fails_the_start_nor_the_saga() -> None:
    """The repeated start() returns the existing saga (created False) and the reply
    completes it: the reply's resumption does not cancel the run that is still creating."""
    store = GatedStore()
    runtime = SagaRuntime("orders", store, tracing=False)
    runtime.commands = CommandDriver("orders.replies", lambda _: None)
    saga = _saga()
    runtime.declare(saga)
    await runtime.start(saga, Reserve(order_id="o1"), saga_id="o1")
    record = None
    for _ in range(100):  # the run suspends once its command is written
        record = await store.get("o1")
        if record is not None and record.wait and "o1" not in runtime.runs:
            break
        await asyncio.sleep(0.02)
    assert record is not None
    wait = Waiting.decode(record.wait)
    assert wait is not None
    store.hold = True  # a start() of the same id (a restarted process) waits in create()
    again = asyncio.create_task(runtime.start(saga, Reserve(order_id="o1"), saga_id="o1"))
    await store.entered.wait()
    headers = {
        "saga-id": "o1",
        "saga-step": "reserve",
        "saga-direction": "forward",
        "saga-attempt": str(wait.attempt),
        "saga-reply-token": wait.token,
        "reply-status": "ok",
    }
    assert await apply_reply(runtime, b'{"reservation_id":"r1"}', headers.get) == "received"
    store.gate.set()
    handle = await again
    assert (handle.saga_id, handle.created) == ("o1", False)
    done = await runtime.wait("o1", 5)
    assert done.status is SagaStatus.COMPLETED
    assert done.results["reserve"] == '{"reservation_id":"r1"}'
    await runtime.shutdown(grace=0.1)
