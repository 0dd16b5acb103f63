"""The PostgreSQL dedup store's keys compare byte by byte (migration 0004, collation "C"),
and a schema at version 3 with marks in it upgrades to it keeping their meaning."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nativekit.backends.postgres import Database, PostgresDedupStore, upgrade
from nativekit.messaging._dedup import ClaimStatus
from tests.postgres.conftest import schema_at_version

pytestmark = pytest.mark.postgres

NOW = "extract(epoch from clock_timestamp())::double precision"


async def collations(database: Database) -> dict[str, str]:
    """The collation of each text column of the dedup table."""
    async with database.connection("test collations") as connection:
        rows = await connection.fetch(
            "SELECT a.attname, c.collname FROM pg_attribute AS a "
            "JOIN pg_collation AS c ON c.oid = a.attcollation "
            "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            database.table("dedup"),
        )
    return {row["attname"]: row["collname"] for row in rows}


async def test_namespace_and_key_compare_byte_by_byte(pg_database: Database) -> None:
    """The columns of the dedup table's primary key have collation "C"."""
    found = await collations(pg_database)
    assert (found["namespace"], found["key"]) == ("C", "C")


@pytest.fixture
async def version_3(postgres_url: str, unique: str) -> AsyncIterator[Database]:
    """A schema at version 3 (as an older nativekit left it); dropped afterwards."""
    async with schema_at_version(postgres_url, f"v3_{unique}", 3) as database:
        yield database


async def test_upgrade_from_version_3_keeps_the_marks(version_3: Database) -> None:
    """Marks written before migration 0004 keep their meaning after it: a DONE stays a
    duplicate, a live claim stays busy, a lapsed one is claimed again, a new key is
    claimed; the key columns are "C" afterwards."""
    async with version_3.connection("old rows") as connection:
        await connection.execute(
            f"INSERT INTO {version_3.table('dedup')} "
            "(namespace, key, state, token, expires, lease) VALUES "
            f"('n', 'done', 'D', 1, {NOW} + 60, NULL), "
            f"('n', 'live', 'P', 2, {NOW} + 60, {NOW} + 60), "
            f"('n', 'lapsed', 'P', 3, {NOW} + 60, {NOW} - 1)"
        )
    assert [m.version for m in await upgrade(version_3)] == [4]
    assert (await collations(version_3))["key"] == "C"
    store = PostgresDedupStore(version_3, namespace="n", retention=60.0)
    claims = await store.claim_many(["done", "live", "lapsed", "new"], lease=5)
    assert [c.status for c in claims] == [
        ClaimStatus.DONE,
        ClaimStatus.BUSY,
        ClaimStatus.CLAIMED,
        ClaimStatus.CLAIMED,
    ]
    held = [c for c in claims if c.status is ClaimStatus.CLAIMED]
    assert await store.finish_many(held, retain=60.0) == [True, True]
    assert await store.states(["lapsed", "new"]) == ["DONE", "DONE"]
