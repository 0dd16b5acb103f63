"""Crash recovery with real processes killed by SIGKILL, and fencing between two replicas."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest
import redis.asyncio as aioredis
from ledger_saga import STEPS, Job, Ledger, build_saga, fail_at
from workers import read_line, spawn, survivor_finishes

import nativekit
from nativekit.backends.redis._saga_store import RedisSagaStore
from nativekit.saga import SagaRecord, SagaStatus

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SAGAS = 200
KILLS = 20


async def ledger_of(client: aioredis.Redis, prefix: str) -> tuple[list[str], list[str]]:
    """Effects applied (once each by construction of the participant) and every call made."""
    effects = [k.decode() for k in await client.lrange(f"{prefix}:ledger:effects", 0, -1)]
    calls = [k.decode() for k in await client.lrange(f"{prefix}:ledger:calls", 0, -1)]
    return effects, calls


def check_converged(records: dict[str, SagaRecord], effects: list[str]) -> None:
    """Every saga ended COMPLETED or COMPENSATED and its effects match that end, never half."""
    applied = set(effects)
    assert len(applied) == len(effects), "an effect was applied twice"
    for saga_id, record in records.items():
        assert record.status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED), (
            saga_id,
            record.status,
            record.error,
        )
        forward = {s for s in STEPS if f"{saga_id}:{s}:forward" in applied}
        undone = {s for s in STEPS if f"{saga_id}:{s}:compensate" in applied}
        if record.status is SagaStatus.COMPLETED:
            assert forward == set(STEPS) and not undone, (saga_id, forward, undone)
        else:
            assert forward <= undone, (saga_id, forward, undone)


async def test_sigkilled_workers_leave_every_saga_resumable(redis_url: str, unique: str) -> None:
    """SIGKILLed workers, default step options: every saga ends well (none FAILED), effects once."""
    prefix = f"test:crash:{unique}"
    client = aioredis.Redis.from_url(redis_url)
    store = RedisSagaStore(client, prefix=prefix, shards=4)
    rng = random.Random(7)
    kills = 0
    started = time.monotonic()
    try:
        while kills < KILLS:
            proc = await spawn("ledger_saga.py", redis_url, prefix, str(SAGAS))
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
            "ledger_saga.py", redis_url, prefix, str(SAGAS), within=90
        )
        assert finished, "the surviving worker did not finish every saga"
        records = {}
        for n in range(SAGAS):
            record = await store.get(f"crash-{n}")
            assert record is not None, f"crash-{n} was never started"
            records[f"crash-{n}"] = record
        effects, calls = await ledger_of(client, prefix)
        check_converged(records, effects)
        for n in range(SAGAS):
            if fail_at(n) is not None:
                assert records[f"crash-{n}"].status is SagaStatus.COMPENSATED
        assert not [r for r in records.values() if r.status is SagaStatus.FAILED]
        interrupted = sum(s.interruptions for r in records.values() for s in r.steps.values())
        assert interrupted > 0, "no kill landed inside a step"
        assert kills >= KILLS
        assert len(calls) > len(effects), "no step was ever re-run after a kill"
        assert time.monotonic() - started < 110
    finally:
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_two_replicas_recovering_at_once_never_share_a_saga(
    redis_url: str, unique: str
) -> None:
    """Two replicas racing to recover the same expired sagas run each one on one replica only."""
    prefix = f"test:fence:{unique}"
    client = aioredis.Redis.from_url(redis_url)
    count = 40

    def replica() -> nativekit.Service:
        return nativekit.Service(
            "fence",
            settings=nativekit.Settings(
                redis={"url": redis_url},
                saga={
                    "key_prefix": prefix,
                    "shards": 4,
                    "lease_seconds": 2,
                    "recovery_interval_seconds": 0.02,
                },
                telemetry={"log_level": "ERROR"},
            ),
        )

    seeder = replica()
    ledger = Ledger(client, prefix)
    seed_saga = build_saga(seeder, ledger)
    store = RedisSagaStore(client, prefix=prefix, shards=4)
    now = time.time()
    for n in range(count):  # RUNNING sagas whose runner died at once: leases expire now
        record = SagaRecord(
            saga_id=f"fence-{n}",
            name=seed_saga.name,
            definition=seed_saga.definition_hash,
            status=SagaStatus.RUNNING,
            input=Job(n=n).model_dump_json(),
            created_at=now,
            updated_at=now,
        )
        await store.create(record, token="dead", lease=0.001)

    replicas = [replica(), replica()]
    active_key, overlap_key = f"{prefix}:active", f"{prefix}:overlaps"
    for index, svc in enumerate(replicas):
        saga = build_saga(svc, ledger, delay=0.005)
        for step in saga.steps:
            step.func = _watched(step.func, client, active_key, overlap_key, f"replica-{index}")
    try:
        for svc in replicas:
            await svc.startup(hook_sigterm=False)
        async with asyncio.timeout(30):
            # polling: the replicas report progress only through the store
            while len((await store.list(status=SagaStatus.COMPLETED, limit=1000)).items) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        effects, calls = await ledger_of(client, prefix)
        assert await client.llen(overlap_key) == 0
        assert sorted(calls) == sorted(effects), "a step ran on both replicas"
        assert len(effects) == count * len(STEPS)
    finally:
        for svc in replicas:
            await svc.shutdown()
        keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _watched(func, client: aioredis.Redis, active: str, overlaps: str, replica: str):  # type: ignore[no-untyped-def]
    """Wrap a step: record overlapping runs of one saga and which replica ran it."""

    async def run(ctx):  # type: ignore[no-untyped-def]
        prefix = active.rsplit(":", 1)[0]
        if await client.hincrby(active, ctx.saga_id, 1) != 1:
            await client.rpush(overlaps, f"{ctx.saga_id}:{ctx.step}")
        previous = await client.hget(f"{prefix}:runner", ctx.saga_id)
        if previous is not None and previous.decode() != replica:
            await client.rpush(overlaps, f"{ctx.saga_id} moved to {replica}")
        await client.hset(f"{prefix}:runner", ctx.saga_id, replica)
        try:
            return await func(ctx)
        finally:
            await client.hincrby(active, ctx.saga_id, -1)

    return run
