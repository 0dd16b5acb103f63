"""SIGKILLed workers running sagas with a parallel group, an event wait, a durable timer
and deadlines: every saga ends COMPLETED or COMPENSATED, effects applied once, never half."""

from __future__ import annotations

import asyncio
import random
import signal

import pytest
import redis.asyncio as aioredis
from model_saga import EFFECTS, fail_at
from test_saga_crash import ledger_of
from workers import read_line, spawn, survivor_finishes

from nativekit.backends.redis._saga_store import RedisSagaStore
from nativekit.saga import SagaStatus

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SAGAS = 100
KILLS = 10


async def test_sigkilled_workers_leave_every_new_kind_of_step_resumable(
    redis_url: str, unique: str
) -> None:
    """Kill workers at random moments; a survivor finishes: no saga half-applied or FAILED."""
    prefix = f"test:model:{unique}"
    client = aioredis.Redis.from_url(redis_url)
    store = RedisSagaStore(client, prefix=prefix, shards=4)
    rng = random.Random(11)
    kills = 0
    try:
        while kills < KILLS:
            proc = await spawn("model_saga.py", redis_url, prefix, str(SAGAS))
            try:
                if not await read_line(proc, "READY", 20):
                    raise AssertionError("worker did not start")
                await asyncio.sleep(rng.uniform(0.05, 0.4))
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                await proc.wait()
        finished = await survivor_finishes(
            "model_saga.py", redis_url, prefix, str(SAGAS), within=90
        )
        assert finished, "the surviving worker did not finish every saga"
        effects, calls = await ledger_of(client, prefix)
        applied = set(effects)
        assert len(applied) == len(effects), "an effect was applied twice"
        statuses = {}
        errors = []
        for n in range(SAGAS):
            saga_id = f"model-{n}"
            record = await store.get(saga_id)
            assert record is not None, f"{saga_id} was never started"
            statuses[saga_id] = record.status
            errors.append(record.error or "")
            assert record.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED), (
                saga_id,
                record.status,
                record.error,
            )
            forward = {s for s in EFFECTS if f"{saga_id}:{s}:forward" in applied}
            undone = {s for s in EFFECTS if f"{saga_id}:{s}:compensate" in applied}
            child = await store.get(f"{saga_id}:pay")
            if child is not None:  # the child's effect follows the parent's end, never half
                paid = f"{saga_id}:pay:capture:forward" in applied
                refunded = f"{saga_id}:pay:capture:compensate" in applied
                if record.status is SagaStatus.COMPLETED:
                    assert child.status is SagaStatus.COMPLETED and paid and not refunded
                else:
                    assert child.status is SagaStatus.COMPENSATED, (saga_id, child.status)
                    assert refunded or not paid, saga_id
            else:
                assert record.status is SagaStatus.COMPENSATED, saga_id
            if record.status is SagaStatus.COMPLETED:
                assert forward == set(EFFECTS) and not undone, (saga_id, forward, undone)
                assert record.results["review"] == "true"
            else:
                assert forward <= undone, (saga_id, forward, undone)
            if fail_at(n) is not None:
                assert record.status is SagaStatus.COMPENSATED, saga_id
        completed = [i for i, s in statuses.items() if s is SagaStatus.COMPLETED]
        assert completed, "no saga completed: the event and timer paths were not exercised"
        assert any("deadline passed" in e for e in errors), "no deadline was enforced"
        assert len(calls) > len(effects), "no step was ever re-run after a kill"
    finally:
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
