"""Saga transitions on PostgreSQL that keep the saga's status are HOT updates (migration
0004): a lease with at least half its length left is kept as it is, so such a write
changes no indexed column; a shorter lease left, or a shorter lease asked for, is set."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nativekit.backends.postgres import Database, PostgresSagaStore, upgrade
from nativekit.backends.postgres._migrations import migrations
from nativekit.backends.postgres._transaction import PostgresTransaction
from nativekit.saga import LeaseLost, SagaStatus
from nativekit.saga._store.model import SagaRecord, Transition
from tests.postgres.conftest import running_record, schema_at_version, table_updates

pytestmark = pytest.mark.postgres

#: The shipped migrations an upgrade from version 3 applies.
AFTER_3 = [m.version for m in migrations() if m.version > 3]


def record(saga_id: str) -> SagaRecord:
    """A fresh RUNNING record."""
    return running_record(saga_id, "hot")


async def lease_left(database: Database, saga_id: str) -> float:
    """Seconds until the saga's lease ends, by the server's clock."""
    async with database.connection("test lease") as connection:
        return float(
            await connection.fetchval(
                f"SELECT lease_until - extract(epoch from clock_timestamp()) "
                f"FROM {database.table('saga')} WHERE id = $1",
                saga_id,
            )
        )


async def ending(database: Database, store: PostgresSagaStore, saga_id: str, n: int) -> None:
    """The transition as a step's transaction ends it (``saga_write``, then COMMIT)."""
    transaction = PostgresTransaction(database)
    await transaction.execute("SELECT 1")
    with transaction.joined():
        await write(store, saga_id, n, lease=30)
    await transaction.commit()


async def write(store: PostgresSagaStore, saga_id: str, n: int, *, lease: float) -> None:
    """A transition of a RUNNING saga that stays RUNNING (a step's record changes)."""
    await store.write(
        saga_id,
        "t1",
        Transition(fields={"step:a": f'{{"n": {n}}}'}),
        current=SagaStatus.RUNNING,
        name="hot",
        definition="d1",
        lease=lease,
        retention=60,
    )


async def test_transitions_that_keep_the_status_are_hot(pg_database: Database) -> None:
    """Twenty transitions of running sagas, by the batched statement and by ``saga_write``
    ending a step's transaction, write no index entry; the leases stay as they were."""
    store = PostgresSagaStore(pg_database)
    ids = [f"hot-{n}" for n in range(10)]
    for saga_id in ids:
        await store.create(record(saga_id), token="t1", lease=30)
    upd, hot = await table_updates(pg_database, "saga")
    for saga_id in ids:  # one statement each
        await write(store, saga_id, 1, lease=30)
    for saga_id in ids:
        await ending(pg_database, store, saga_id, 2)
    assert await table_updates(pg_database, "saga") == (upd + 20, hot + 20)
    assert 29 < await lease_left(pg_database, ids[0]) <= 30


async def test_a_lease_with_less_than_half_left_is_extended(pg_database: Database) -> None:
    """A write asking for a longer lease than half of what is left extends it; one asking
    for a shorter lease than what is left shortens it."""
    store = PostgresSagaStore(pg_database)
    await store.create(record("grow"), token="t1", lease=10)
    await write(store, "grow", 1, lease=600)
    assert 599 < await lease_left(pg_database, "grow") <= 600
    await write(store, "grow", 2, lease=30)
    assert 29 < await lease_left(pg_database, "grow") <= 30


@pytest.fixture
async def version_3(postgres_url: str, unique: str) -> AsyncIterator[Database]:
    """A schema at version 3 (as an older nativekit left it); dropped afterwards."""
    async with schema_at_version(postgres_url, f"v3_{unique}", 3) as database:
        yield database


async def test_upgrade_from_version_3_keeps_running_sagas(version_3: Database) -> None:
    """A saga created before migration 0004 is written after it (by the replaced
    ``saga_write``) as a HOT update; the saga table gets fillfactor 70."""
    store = PostgresSagaStore(version_3)
    await store.create(record("old"), token="t1", lease=30)
    assert [m.version for m in await upgrade(version_3)] == AFTER_3
    async with version_3.connection("read the options") as connection:
        options = await connection.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = $1::regclass", version_3.table("saga")
        )
    assert options == ["fillfactor=70"]
    upd, hot = await table_updates(version_3, "saga")
    await ending(version_3, store, "old", 1)
    assert await table_updates(version_3, "saga") == (upd + 1, hot + 1)
    async with version_3.connection("read the saga") as connection:
        step = await connection.fetchval(
            f"SELECT fields->>'step:a' FROM {version_3.table('saga')} WHERE id = 'old'"
        )
    assert step == '{"n": 1}'


@pytest.fixture
async def version_4(postgres_url: str, unique: str) -> AsyncIterator[Database]:
    """A schema at version 4; dropped afterwards."""
    async with schema_at_version(postgres_url, f"v4_{unique}", 4) as database:
        yield database


async def test_upgrade_from_version_4_replaces_saga_write(version_4: Database) -> None:
    """A saga created at version 4 is written after the upgrade by the function of 0005
    (the plain update, still HOT), and a stale token is still refused."""
    store = PostgresSagaStore(version_4)
    await store.create(record("four"), token="t1", lease=30)
    await ending(version_4, store, "four", 1)  # the function of 0004
    assert 5 in [m.version for m in await upgrade(version_4)]
    upd, hot = await table_updates(version_4, "saga")
    await ending(version_4, store, "four", 2)
    assert await table_updates(version_4, "saga") == (upd + 1, hot + 1)
    async with version_4.connection("read the function") as connection:
        source = await connection.fetchval(
            "SELECT prosrc FROM pg_proc WHERE oid = $1::regprocedure",
            f"{version_4.table('saga_write')}(text, text, text, jsonb, float8, float8, text, "
            "boolean, boolean, boolean, text[])",
        )
    assert "released boolean" in source
    stale = PostgresTransaction(version_4)
    await stale.execute("SELECT 1")
    with pytest.raises(LeaseLost), stale.joined():
        await store.write(
            "four",
            "t0",
            Transition(fields={"step:a": "{}"}),
            current=SagaStatus.RUNNING,
            name="hot",
            definition="d1",
            lease=30,
            retention=60,
        )
    await stale.close()
