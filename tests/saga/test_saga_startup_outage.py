"""Saga startup with the store down: the definitions are checked in the background."""

from __future__ import annotations

import asyncio
import time

from nativekit.errors import BackendUnavailable
from nativekit.saga import MemorySagaStore, Saga, SagaContext, SagaRuntime


class DownThenUp(MemorySagaStore):
    """A store that cannot answer ``live_definitions`` ``down`` times, then reports
    ``live`` (definition hash -> running instances)."""

    def __init__(self, down: int, live: dict[str, int]) -> None:
        super().__init__()
        self.down = down
        self.live = live

    async def live_definitions(self, name: str) -> dict[str, int]:
        if self.down:
            self.down -= 1
            raise BackendUnavailable("store down (test)")
        return dict(self.live)


def one_step() -> Saga[dict[str, int]]:
    saga: Saga[dict[str, int]] = Saga("order")

    @saga.step()
    async def only(ctx: SagaContext[dict[str, int]]) -> None:
        pass

    return saga


async def wait_for(check: object, deadline: float = 10) -> None:
    end = time.monotonic() + deadline
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end
        await asyncio.sleep(0.02)


async def test_startup_goes_on_and_checks_once_the_store_answers() -> None:
    """Startup returns at once; readiness says what it waits for; the loops start after."""
    runtime = SagaRuntime("t", DownThenUp(3, {}), tracing=False, recovery_interval=0.05)
    runtime.declare(one_step())
    started = time.monotonic()
    await runtime.startup()
    try:
        assert time.monotonic() - started < 1.0
        waiting = runtime.definitions_check()
        assert waiting is not None and waiting.status == "fail"
        assert "waiting for the saga store to check definitions" in (waiting.output or "")
        assert not runtime._loops
        await wait_for(lambda: runtime.definitions_check() is None)
        await wait_for(lambda: bool(runtime._loops))
        assert (await runtime.definitions_readiness()).status == "pass"
    finally:
        await runtime.shutdown(grace=1)


async def test_old_instances_found_later_keep_the_service_unready() -> None:
    """Live instances of a definition this service lacks, found by the background check:
    readiness fails with the ConfigError's message and recovery never starts."""
    runtime = SagaRuntime("t", DownThenUp(1, {"0ldhash": 2}), tracing=False)
    runtime.declare(one_step())
    await runtime.startup()
    try:
        await wait_for(lambda: "changed" in ((runtime.definitions_check() or _pass).output or ""))
        result = await runtime.definitions_readiness()
        assert result.status == "fail"
        assert "2 instance(s) of definitions this service does not register" in (
            result.output or ""
        )
        assert not runtime._loops
    finally:
        await runtime.shutdown(grace=1)


class _Pass:
    output = ""


_pass = _Pass()
