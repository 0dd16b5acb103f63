"""SIGKILLed saga workers on PostgreSQL: every saga ends, and each effect a step wrote in its
transaction (``ctx.db``) exists exactly once, with no idempotency check in the step."""

from __future__ import annotations

import asyncio
import collections
import random
import signal
import sys
from pathlib import Path

import asyncpg
import pytest

from nativekit.backends.postgres import Database, PostgresSagaStore
from nativekit.saga import SagaRecord, SagaStatus

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

HERE = Path(__file__).parent
SAGAS = 120
KILLS = 12
STEPS = ("reserve", "charge", "ship")


async def spawn(*args: str) -> asyncio.subprocess.Process:
    """Start a worker (``pg_ledger_saga.py``) with its stdout piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "pg_ledger_saga.py"), *args, stdout=asyncio.subprocess.PIPE
    )


async def line(proc: asyncio.subprocess.Process, prefix: str, deadline: float) -> bool:
    """True once the worker printed a line starting with ``prefix`` within ``deadline`` s."""
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(deadline):
            while out := await proc.stdout.readline():
                if out.decode().startswith(prefix):
                    return True
    except TimeoutError:
        return False
    return False


def fail_at(n: int) -> str | None:
    """As pg_ledger_saga.fail_at."""
    return {1: "charge", 2: "ship"}.get(n % 4)


async def test_sigkilled_workers_leave_each_transactional_effect_exactly_once(
    pg_database: Database, postgres_url: str
) -> None:
    """Workers killed at random points: sagas end COMPLETED or COMPENSATED as their input
    says, each effect row exists once, and steps did re-run (calls > effects)."""
    schema = pg_database.schema
    rng = random.Random(11)
    kills = 0
    while kills < KILLS:
        proc = await spawn(postgres_url, schema, str(SAGAS))
        try:
            assert await line(proc, "READY", 30), "worker did not start"
            await asyncio.sleep(rng.uniform(0.1, 0.5))
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            await proc.wait()
    survivor = await spawn(postgres_url, schema, str(SAGAS))
    try:
        assert await line(survivor, "DONE", 120), "the surviving worker did not finish"
    finally:
        if survivor.returncode is None:
            survivor.kill()
        await survivor.wait()
    store = PostgresSagaStore(pg_database)
    records: dict[str, SagaRecord] = {}
    for n in range(SAGAS):
        record = await store.get(f"pg-{n}")
        assert record is not None, f"pg-{n} was never started"
        records[f"pg-{n}"] = record
    connection = await asyncpg.connect(postgres_url)
    try:
        effects = [r["key"] for r in await connection.fetch(f"SELECT key FROM {schema}.effects")]
        calls = await connection.fetchval(f"SELECT count(*) FROM {schema}.calls")
    finally:
        await connection.close()
    counts = collections.Counter(effects)
    assert [k for k, c in counts.items() if c > 1] == [], "an effect committed twice"
    for n in range(SAGAS):
        saga_id, refused = f"pg-{n}", fail_at(n)
        record = records[saga_id]
        forward = {s for s in STEPS if f"{saga_id}:{s}:forward" in counts}
        undone = {s for s in STEPS if f"{saga_id}:{s}:compensate" in counts}
        if refused is None:
            assert record.status is SagaStatus.COMPLETED, (saga_id, record.error)
            assert forward == set(STEPS) and not undone, (saga_id, forward, undone)
        else:
            assert record.status is SagaStatus.COMPENSATED, (saga_id, record.error)
            done = set(STEPS[: STEPS.index(refused)])
            # exactly the completed steps were applied and each was undone once: a step's
            # write exists iff its completion committed
            assert forward == done and undone == done, (saga_id, forward, undone)
    interrupted = sum(s.interruptions for r in records.values() for s in r.steps.values())
    assert interrupted > 0, "no kill landed inside a step"
    assert calls > len(effects), "no step was ever re-run after a kill"
