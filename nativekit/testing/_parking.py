"""The crash matrix's timekeeper: moves a parked saga on without real waiting.

A saga parked on ``ctx.sleep`` or ``ctx.wait_for`` holds no task; in
production the recovery loop of some replica resumes it when its lease runs
out, or a signal wakes it. Under the matrix's manual clock the timekeeper plays
both: it delivers the events the test gave (each once, through the store, with a
crash point after it) and otherwise moves the clock to the wake-up time and
runs a recovery pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter

from nativekit.saga._run.runtime import SagaRuntime
from nativekit.saga._store.memory import MemorySagaStore

_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def _encode(payload: Any) -> str:
    if isinstance(payload, BaseModel):
        return payload.model_dump_json()
    return _ANY.dump_json(payload).decode()


async def keep_time(
    runtime: SagaRuntime,
    store: MemorySagaStore,
    saga_id: str,
    clock: Any,
    events: Mapping[str, Any],
    point: Callable[[str], None],
) -> None:
    """Until cancelled: resume ``saga_id`` whenever it is parked and nothing runs it here."""
    while True:
        await asyncio.sleep(0.005)
        record = await store.get(saga_id)
        if record is None or not record.status.active or saga_id in runtime.runs:
            continue
        if not any(step.waiting for step in record.steps.values()):
            continue  # not parked (a command reply, or a crashed run awaiting recovery)
        due = [name for name in record.awaiting if name in events and name not in record.events]
        if due:
            name = due[0]
            await store.signal(saga_id, name, _encode(events[name]))
            point(f"signal {name}")
            await runtime.resume(saga_id)
            continue
        if record.lease_until is not None and record.lease_until > clock():
            clock.now = record.lease_until + 0.001
        await runtime.recover()
