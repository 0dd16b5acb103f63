"""A consumer process for the crash tests: kills itself with SIGKILL at a chosen point.

Usage: python tests/messaging/crash_worker.py TOPIC GROUP CRASH_AT TARGET PREFIX
CRASH_AT: after_effect | after_done | after_commit | none. TARGET: index of the message
(its message id is ``m-<TARGET>`` and, on a one-partition topic, its offset ``TARGET``).
Settings (broker, Redis, lease) come from NATIVEKIT_* variables. Each handled message
increments ``PREFIX:effect:<order_id>`` in Redis: the side effect the tests count.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis.asyncio as aioredis
from pydantic import BaseModel

import nativekit
from nativekit.backends.kafka._broker import KafkaGroupConsumer


class Order(BaseModel):
    """The event."""

    order_id: str


def die() -> None:
    """Vanish like a killed pod: no cleanup, no commit."""
    os.kill(os.getpid(), signal.SIGKILL)


async def main(topic: str, group: str, crash_at: str, target: int, prefix: str) -> None:
    svc = nativekit.Service("crash-worker")
    effects = aioredis.Redis.from_url(os.environ["NATIVEKIT_REDIS_URL"])

    @svc.consumer(topic, group=group)
    async def handle(event: Order) -> None:
        await effects.incr(f"{prefix}:effect:{event.order_id}")
        if crash_at == "after_effect" and event.order_id == f"o-{target}":
            die()

    store: Any = svc.messaging.consumers[0].store
    finish = store.finish_many

    async def finish_then_die(claims: Any, **kwargs: Any) -> Any:
        result = await finish(claims, **kwargs)
        if crash_at == "after_done" and any(c.key == f"m-{target}" for c in claims):
            die()
        return result

    store.finish_many = finish_then_die
    commit = KafkaGroupConsumer.commit

    async def commit_then_die(self: KafkaGroupConsumer, offsets: Any) -> None:
        await commit(self, offsets)
        if crash_at == "after_commit" and any(o > target for o in offsets.values()):
            die()

    KafkaGroupConsumer.commit = commit_then_die  # type: ignore[method-assign]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await svc.startup(hook_sigterm=False)
    await effects.set(f"{prefix}:started:{crash_at}", 1, ex=600)
    await stop.wait()
    await svc.shutdown()
    await effects.aclose()


if __name__ == "__main__":
    topic, group, crash_at, target, prefix = sys.argv[1:6]
    asyncio.run(main(topic, group, crash_at, int(target), prefix))
