"""`nativekit dlq` with the consumers' DONE/DEAD marks in PostgreSQL (NATIVEKIT_DATABASE_URL):
the tests of test_dlq.py again, the command reading and clearing the marks in the schema the
service writes them to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from nativekit.backends.postgres import Database
from tests.cli.conftest import Cli
from tests.cli.test_dlq import (
    Shop,
    open_shop,
    test_a_copy_with_the_same_id_is_skipped_unless_the_mark_is_cleared,
    test_list_show_and_replay_through_the_idempotent_consumer,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres]

__all__ = [
    "test_a_copy_with_the_same_id_is_skipped_unless_the_mark_is_cleared",
    "test_list_show_and_replay_through_the_idempotent_consumer",
]


@pytest.fixture
async def shop(
    kafka_url: str, redis_url: str, postgres_url: str, pg_database: Database, unique: str, cli: Cli
) -> AsyncIterator[Shop]:
    """The shop with its marks in this test's own migrated schema."""
    env = {
        "NATIVEKIT_DATABASE_URL": postgres_url,
        "NATIVEKIT_DATABASE_SCHEMA_NAME": pg_database.schema,
    }
    async with open_shop(kafka_url, redis_url, unique, cli, **env) as running:
        yield running


async def test_the_cleared_mark_is_a_row_of_the_services_schema(
    shop: Shop, pg_database: Database, unique: str
) -> None:
    """The DEAD mark `nativekit dlq replay` cleared is a row of the service's dedup table,
    DONE once the replay was handled (no mark of this test in Redis)."""
    await test_a_copy_with_the_same_id_is_skipped_unless_the_mark_is_cleared(shop, unique)
    async with pg_database.connection("read the marks") as connection:
        rows = await connection.fetch(
            f"SELECT namespace, key, state FROM {pg_database.table('dedup')} WHERE key LIKE $1",
            f"%{unique}-b%",
        )
    billing = [row for row in rows if f"billing-{unique}" in row["namespace"]]
    assert [row["state"] for row in billing] == ["D"], rows
