"""Fixtures of the PostgreSQL tests (the server and schema fixtures are in tests/conftest.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from nativekit.backends.postgres import Database
from nativekit.backends.postgres._migrations import migrations
from nativekit.saga import SagaStatus
from nativekit.saga._store.model import SagaRecord
from nativekit.settings import Settings


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes started by a test; killed at the end whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@asynccontextmanager
async def schema_at_version(url: str, schema: str, version: int) -> AsyncIterator[Database]:
    """A schema migrated up to ``version`` only, as an older nativekit left it; dropped
    afterwards."""
    database = Database(Settings(database={"url": url, "schema_name": schema}))
    async with database.connection("create an old schema") as connection:
        await connection.execute(f"CREATE SCHEMA {database.schema}")
        await connection.execute(
            f"CREATE TABLE {database.table('nk_migrations')} (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in migrations()[:version]:
            await connection.execute(migration.sql.replace("{schema}", database.schema))
            await connection.execute(
                f"INSERT INTO {database.table('nk_migrations')} (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
    try:
        yield database
    finally:
        async with database.connection("drop the test schema") as connection:
            await connection.execute(f"DROP SCHEMA {database.schema} CASCADE")
        await database.aclose()


async def table_updates(database: Database, table: str) -> tuple[int, int]:
    """(updates, HOT updates) of ``table`` in the database's schema so far."""
    async with database.connection("test stats") as connection:
        await connection.execute("SELECT pg_stat_force_next_flush()")
        row = await connection.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE schemaname = $1 AND relname = $2",
            database.schema,
            table,
        )
    return int(row["n_tup_upd"]), int(row["n_tup_hot_upd"])


def running_record(saga_id: str, name: str, saga_input: str = "{}") -> SagaRecord:
    """A fresh RUNNING record of saga ``name`` (definition ``d1``)."""
    now = time.time()
    return SagaRecord(
        saga_id=saga_id,
        name=name,
        definition="d1",
        status=SagaStatus.RUNNING,
        input=saga_input,
        created_at=now,
        updated_at=now,
    )
