"""`nativekit db upgrade/status` and the PostgreSQL rows of `nativekit check`, on a real server."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

import nativekit.backends.postgres
from tests.cli.conftest import Cli

pytestmark = pytest.mark.postgres

#: the migrations the package ships, in order (read from its files, so a new one joins)
SHIPPED = sorted(
    p.stem for p in (Path(nativekit.backends.postgres.__file__).parent / "migrations").glob("*.sql")
)


async def test_upgrade_applies_the_shipped_migrations_once_and_check_reports_them(
    cli: Cli, postgres_url: str, unique: str
) -> None:
    """Before: check fails naming the pending migration; upgrade creates the tables and
    records version 1; a second upgrade applies nothing; check then says ok."""
    schema = f"cli_{unique}"
    cli.env.update(NATIVEKIT_DATABASE_URL=postgres_url, NATIVEKIT_DATABASE_SCHEMA_NAME=schema)
    before = await cli("check", "--json")
    status = await cli("db", "status", "--json")
    first = await cli("db", "upgrade", "--json")
    second = await cli("db", "upgrade", "--json")
    after = await cli("check", "--json")
    connection = await asyncpg.connect(postgres_url)
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()
    rows = {row["check"]: row for row in before.json()["checks"]}
    assert before.code == 1 and rows["postgres:schema"]["status"] == "fail"
    assert SHIPPED[:3] == ["0001_initial", "0002_saga_write_function", "0003_dedup_lease"]
    assert f"pending: {', '.join(SHIPPED)}" in rows["postgres:schema"]["detail"]
    assert rows["postgres"]["status"] == "ok" and "PostgreSQL " in rows["postgres"]["detail"]
    assert status.json()["version"] == 0 and status.json()["pending"] == SHIPPED
    versions = [int(name.partition("_")[0]) for name in SHIPPED]
    assert versions == list(range(1, len(SHIPPED) + 1))
    assert first.code == 0 and first.json()["applied"] == versions
    assert second.code == 0 and second.json()["applied"] == []
    names = {r["table_name"] for r in tables}
    assert names >= {"saga", "outbox", "dedup", "reply", "nk_migrations"}
    checks = {row["check"]: row for row in after.json()["checks"]}
    assert checks["postgres:schema"] == {
        "check": "postgres:schema",
        "status": "ok",
        "detail": f"{schema} at version {versions[-1]}",
    }


async def test_without_a_database_url_db_commands_are_a_usage_error(cli: Cli) -> None:
    """No NATIVEKIT_DATABASE_URL: exit 2 saying what to set."""
    ran = await cli("db", "upgrade")
    assert ran.code == 2 and "NATIVEKIT_DATABASE_URL is not set" in ran.err


async def test_an_unreachable_server_exits_3(cli: Cli) -> None:
    """A closed port: exit 3 naming the URL (password masked)."""
    ran = await cli("db", "upgrade", NATIVEKIT_DATABASE_URL="postgresql://u:pw@127.0.0.1:1/x")
    assert ran.code == 3 and "127.0.0.1:1" in ran.err and "pw" not in ran.err
