"""Resuming a waiting saga from a reply on real Redis: one atomic check-and-claim."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from pydantic import BaseModel

from nativekit.backends.redis._saga_store import RedisSagaStore
from nativekit.saga import Saga, SagaContext, SagaStatus
from nativekit.saga._commands.replies import apply_reply
from nativekit.saga._run.commands import CommandDriver
from nativekit.saga._run.runtime import SagaRuntime
from nativekit.saga._store.model import Waiting


class Reserve(BaseModel):
    order_id: str


class Reserved(BaseModel):
    reservation_id: str


def _saga() -> Saga[Reserve]:
    saga: Saga[Reserve] = Saga("reserve-only", input=Reserve)

    @saga.command_step(topic="inventory.commands", reply=Reserved, reply_timeout=30)
    async def reserve(ctx: SagaContext[Reserve]) -> Reserve:
        return ctx.data

    return saga


async def test_a_reply_resumes_its_waiting_saga_once_and_others_are_late_or_ignored(
    redis_url: str, unique: str
) -> None:
    """Wrong token: late. Matching reply: received, the saga completes with it. The same
    reply again: late. Unknown saga, or a definition this runtime lacks: ignored."""
    client = aioredis.Redis.from_url(redis_url)
    prefix = f"test:resume:{unique}"
    try:
        store = RedisSagaStore(client, prefix=prefix, shards=2)
        runtime = SagaRuntime("orders", store, tracing=False)
        runtime.commands = CommandDriver("orders.replies", lambda _: None)
        saga = _saga()
        runtime.declare(saga)
        await runtime.start(saga, Reserve(order_id="o1"), saga_id="o1")
        record = None
        for _ in range(100):  # the run suspends once its command is written
            record = await store.get("o1")
            if record is not None and record.wait:
                break
            await asyncio.sleep(0.02)
        assert record is not None
        wait = Waiting.decode(record.wait)
        assert wait is not None
        headers = {
            "saga-id": "o1",
            "saga-step": "reserve",
            "saga-direction": "forward",
            "saga-attempt": str(wait.attempt),
            "saga-reply-token": "not-the-token",
            "reply-status": "ok",
        }
        body = b'{"reservation_id":"r1"}'
        assert await apply_reply(runtime, body, headers.get) == "late"
        assert (await store.get("o1")).token == record.token  # type: ignore[union-attr]
        headers["saga-reply-token"] = wait.token
        assert await apply_reply(runtime, body, headers.get) == "received"
        done = await runtime.wait("o1", 5)
        assert done.status is SagaStatus.COMPLETED
        assert done.results["reserve"] == '{"reservation_id":"r1"}'
        assert await apply_reply(runtime, body, headers.get) == "late"
        assert await apply_reply(runtime, body, {**headers, "saga-id": "nope"}.get) == "ignored"

        other = SagaRuntime("orders", store, tracing=False)  # does not register the saga
        other.commands = CommandDriver("orders.replies", lambda _: None)
        await runtime.start(saga, Reserve(order_id="o2"), saga_id="o2")
        for _ in range(100):
            waiting = await store.get("o2")
            if waiting is not None and waiting.wait:
                break
            await asyncio.sleep(0.02)
        assert waiting is not None and waiting.wait
        token = Waiting.decode(waiting.wait).token  # type: ignore[union-attr]
        reply = {**headers, "saga-id": "o2", "saga-reply-token": token}
        assert await apply_reply(other, body, reply.get) == "ignored"
        assert (await store.get("o2")).token == waiting.token  # type: ignore[union-attr]
        await runtime.shutdown(grace=0.1)
    finally:
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
