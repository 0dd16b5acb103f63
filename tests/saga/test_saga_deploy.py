"""Deploys that SIGKILL a service: a crash is not a step failure. Real processes, real Redis."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest
import redis.asyncio as aioredis
from deploy_saga import STEPS, refused
from suicidal_saga import MAX_INTERRUPTIONS
from workers import read_line, spawn, survivor_finishes

from nativekit.backends.redis._saga_store import RedisSagaStore
from nativekit.saga import SagaRecord, SagaStatus
from nativekit.saga._store.model import StepStatus

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SAGAS = 400
KILLS = 3


async def cleanup(client: aioredis.Redis, prefix: str) -> None:
    """Delete the test's keys and close the client."""
    keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def effects_of(client: aioredis.Redis, prefix: str) -> list[str]:
    """Effects the ledger applied (once per idempotency key by construction)."""
    return [k.decode() for k in await client.lrange(f"{prefix}:ledger:effects", 0, -1)]


async def test_three_sigkills_under_load_fail_none_of_400_default_sagas(
    redis_url: str, unique: str
) -> None:
    """400 sagas with default step options, 3 SIGKILLs under load: 0 FAILED, effects once."""
    prefix = f"test:deploy:{unique}"
    client = aioredis.Redis.from_url(redis_url)
    store = RedisSagaStore(client, prefix=prefix, shards=4)
    rng = random.Random(23)
    started = time.monotonic()
    try:
        for _ in range(KILLS):
            proc = await spawn("deploy_saga.py", redis_url, prefix, str(SAGAS))
            try:
                assert await read_line(proc, "READY", 20), "worker did not start"
                await asyncio.sleep(rng.uniform(0.4, 1.0))  # sagas in flight
            finally:
                assert proc.returncode is None, "the worker ended before its SIGKILL"
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
        finished = await survivor_finishes(
            "deploy_saga.py", redis_url, prefix, str(SAGAS), within=90
        )
        assert finished, "the surviving worker did not finish every saga"
        records: dict[int, SagaRecord] = {}
        for n in range(SAGAS):
            record = await store.get(f"deploy-{n}")
            assert record is not None, f"deploy-{n} was never started"
            records[n] = record
        effects = await effects_of(client, prefix)
        assert len(set(effects)) == len(effects), "an effect was applied twice"
        failed = {n: r.error for n, r in records.items() if r.status is SagaStatus.FAILED}
        assert failed == {}
        for n, record in records.items():
            done = {s for s in STEPS if f"deploy-{n}:{s}:forward" in effects}
            undone = {s for s in STEPS if f"deploy-{n}:{s}:compensate" in effects}
            if refused(n):
                assert record.status is SagaStatus.COMPENSATED, (n, record.error)
                assert done <= undone and "confirm" not in done, (n, done, undone)
            else:  # nothing in it failed: three kills never fail or roll back a healthy saga
                assert record.status is SagaStatus.COMPLETED, (n, record.error)
                assert done == set(STEPS) and not undone, (n, done, undone)
        interrupted = sum(s.interruptions for r in records.values() for s in r.steps.values())
        assert interrupted > 0, "no kill landed inside a step"
        assert time.monotonic() - started < 100
    finally:
        await cleanup(client, prefix)


@pytest.mark.parametrize(
    ("mode", "status", "error"),
    [
        (
            "forward",
            SagaStatus.COMPENSATED,
            "step 'boom' failed: the step kept killing its process",
        ),
        ("pivot", SagaStatus.FAILED, "the step kept killing its process"),
        ("compensation", SagaStatus.FAILED, "compensation of step 'reserve' exhausted its policy"),
    ],
)
async def test_a_step_that_kills_its_process_every_time_still_ends(
    redis_url: str, unique: str, mode: str, status: SagaStatus, error: str
) -> None:
    """A step that SIGKILLs its own process runs 1 + max_interruptions times, then the saga ends."""
    prefix = f"test:suicidal:{unique}"
    client = aioredis.Redis.from_url(redis_url)
    store = RedisSagaStore(client, prefix=prefix, shards=2)
    kills, done = 0, None
    try:
        while done is None and kills <= MAX_INTERRUPTIONS + 1:
            proc = await spawn("suicidal_saga.py", redis_url, prefix, mode)
            done = await read_line(proc, "DONE", 30)
            await proc.wait()
            if done is None:
                assert proc.returncode == -signal.SIGKILL, proc.returncode
                kills += 1
        assert done == f"DONE {status.value}"
        assert kills == 1 + MAX_INTERRUPTIONS
        record = await store.get("boom")
        assert record is not None and record.status is status
        assert error in (record.error or ""), record.error
        assert "kept killing its process" in (record.error or "")
        effects = await effects_of(client, prefix)
        killer = "boom:forward" if mode != "compensation" else "reserve:compensate"
        assert sorted(e for e in effects if killer in e) == [
            f"boom:{killer}:{attempt}" for attempt in range(1, kills + 1)
        ]
        step = record.steps["boom" if mode != "compensation" else "reserve"]
        if mode == "compensation":
            assert step.status is StepStatus.COMPENSATION_FAILED
            assert step.compensation_interruptions == 1 + MAX_INTERRUPTIONS
        else:
            assert step.interruptions == 1 + MAX_INTERRUPTIONS and step.uncertain
        if mode == "forward":  # the uncertain step and the one before it were compensated
            assert {"boom:boom:compensate", "boom:reserve:compensate"} <= set(effects)
    finally:
        await cleanup(client, prefix)
