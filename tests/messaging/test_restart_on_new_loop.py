"""A service's consumers work again after a restart on another event loop (one loop per test)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

import nativekit
from nativekit.testing import MessagingHarness


class Ping(BaseModel):
    n: int


def test_consumer_handles_messages_after_a_restart_on_a_new_loop() -> None:
    """Each of two event loops starts the service and gets its message processed."""
    svc = nativekit.Service("restarts", settings=nativekit.Settings(_env_file=None))
    seen: list[int] = []

    @svc.consumer("pings", group="restarts")
    async def on_ping(event: Ping) -> None:
        seen.append(event.n)

    async def deliver(n: int) -> str:
        async with MessagingHarness(svc, timeout=5) as harness:
            return (await harness.deliver("pings", Ping(n=n), message_id=f"m-{n}")).outcome

    assert asyncio.run(deliver(1)) == "processed"
    assert asyncio.run(deliver(2)) == "processed"
    assert seen == [1, 2]
