"""Retention on a real PostgreSQL: finished sagas, DONE marks and answered replies past
their time are deleted from the tables (not only hidden), in batches of the configured
size, by the pass a service runs on its configured schedule; live rows stay."""

from __future__ import annotations

import asyncio
import time

import pytest

from nativekit import Service, Settings
from nativekit.backends.postgres import Database, PostgresDedupStore, PostgresSagaStore
from nativekit.backends.postgres._reply_store import PostgresReplyStore
from nativekit.backends.postgres._retention import Retention
from nativekit.messaging._commands.reply_store import StoredReply
from nativekit.saga import SagaRecord, SagaStatus
from nativekit.saga._store.model import Transition

pytestmark = pytest.mark.postgres

GONE = 0.05  # seconds of retention that pass during the test
KEPT = 3600.0


async def finished_sagas(database: Database, expiring: int, kept: int) -> None:
    """``expiring`` COMPLETED sagas with a GONE retention, ``kept`` with KEPT."""
    store = PostgresSagaStore(database)
    for i in range(expiring + kept):
        now = time.time()
        record = SagaRecord(
            saga_id=f"s{i}", name="n", definition="d", status=SagaStatus.RUNNING,
            input="{}", created_at=now, updated_at=now,
        )  # fmt: skip
        await store.create(record, token="t", lease=30)
        await store.write(
            record.saga_id, "t", Transition(status=SagaStatus.COMPLETED),
            current=SagaStatus.RUNNING, name="n", definition="d", lease=30,
            retention=GONE if i < expiring else KEPT,
        )  # fmt: skip


async def done_marks(database: Database, expiring: int, kept: int) -> None:
    """DONE marks: ``expiring`` with a GONE retention, ``kept`` with KEPT."""
    store = PostgresDedupStore(database, namespace="billing")
    claims = await store.claim_many([f"m{i}" for i in range(expiring + kept)], lease=30)
    await store.finish_many(claims[:expiring], retain=GONE)
    await store.finish_many(claims[expiring:], retain=KEPT)


async def replies(database: Database, expiring: int, kept: int) -> None:
    """Stored command replies: ``expiring`` with a GONE retention, ``kept`` with KEPT."""
    store = PostgresReplyStore(database, namespace="inventory")
    reply = StoredReply(True, "Reserved", b"{}", None)
    for i in range(expiring + kept):
        token = await store.claim(f"r{i}", lease=30)
        assert isinstance(token, str)
        assert await store.finish(f"r{i}", token, reply, retain=GONE if i < expiring else KEPT)


async def rows(database: Database) -> dict[str, int]:
    """Rows physically in each table."""
    async with database.connection("count rows") as connection:
        return {
            table: int(await connection.fetchval(f"SELECT count(*) FROM {database.table(table)}"))
            for table in ("saga", "dedup", "reply")
        }


async def test_one_pass_deletes_every_expired_row_in_batches(pg_database: Database) -> None:
    """A pass with batches of 2 deletes the 5 + 3 + 3 expired rows and nothing else."""
    await finished_sagas(pg_database, 5, 2)
    await done_marks(pg_database, 3, 1)
    await replies(pg_database, 3, 1)
    await asyncio.sleep(GONE * 3)  # the GONE retentions run out on the server's clock
    retention = Retention(pg_database, service="t", interval=60, batch=2)
    assert await retention.run_once() == 11
    assert await rows(pg_database) == {"saga": 2, "dedup": 1, "reply": 1}
    assert await retention.run_once() == 0


async def test_a_service_runs_the_pass_on_its_schedule(
    pg_database: Database, postgres_url: str
) -> None:
    """NATIVEKIT_DATABASE_RETENTION_INTERVAL_SECONDS / _BATCH: a started service deletes
    expired rows in the background; a stopped one no more."""
    settings = Settings(
        _env_file=None,
        database={
            "url": postgres_url,
            "schema_name": pg_database.schema,
            "retention_interval_seconds": 0.1,
            "retention_batch": 1,
        },
    )
    await finished_sagas(pg_database, 3, 1)
    await done_marks(pg_database, 2, 1)
    svc = Service("billing", settings=settings)
    await svc.startup(hook_sigterm=False)
    try:
        deadline = time.monotonic() + 20
        while (left := await rows(pg_database)) != {"saga": 1, "dedup": 1, "reply": 0}:
            assert time.monotonic() < deadline, left
            await asyncio.sleep(0.05)
    finally:
        await svc.shutdown()
    await done_marks(pg_database, 1, 0)  # m0 again: expires, but nobody deletes it now
    await asyncio.sleep(0.4)  # four intervals of the stopped pass
    assert (await rows(pg_database))["dedup"] == 2
