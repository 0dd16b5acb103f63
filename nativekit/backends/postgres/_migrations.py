"""Versioned schema migrations shipped with the package (``migrations/NNNN_name.sql``).

``nativekit db upgrade`` (or ``NATIVEKIT_DATABASE_MIGRATE_ON_START``) applies the
pending ones in order, each in its own transaction, and records it in
``<schema>.nk_migrations``. Replicas upgrading at once serialize on an advisory
lock, so each migration runs exactly once.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from importlib import resources

from nativekit.backends.postgres._client import Database

_NAME = re.compile(r"(\d{4})_(\w+)\.sql")


@dataclass(frozen=True)
class Migration:
    """One shipped migration: its version, name and SQL (``{schema}`` not yet replaced)."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every shipped migration, oldest first."""
    found = []
    for item in resources.files("nativekit.backends.postgres").joinpath("migrations").iterdir():
        match = _NAME.fullmatch(item.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), item.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> int:
    """The schema version this nativekit expects."""
    return migrations()[-1].version


def _lock_id(schema: str) -> int:
    return zlib.crc32(f"nativekit-migrations:{schema}".encode()) - 2**31


async def current_version(database: Database) -> int:
    """The version of the schema in the database (0: nothing applied)."""
    async with database.connection("read the schema version") as connection:
        exists = await connection.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", database.table("nk_migrations")
        )
        if not exists:
            return 0
        value = await connection.fetchval(
            f"SELECT max(version) FROM {database.table('nk_migrations')}"
        )
        return int(value or 0)


async def pending(database: Database) -> list[Migration]:
    """Shipped migrations not applied yet."""
    version = await current_version(database)
    return [m for m in migrations() if m.version > version]


async def upgrade(database: Database) -> list[Migration]:
    """Apply the pending migrations; returns those this call applied."""
    schema = database.schema
    applied: list[Migration] = []
    async with database.connection("upgrade the schema") as connection:
        await connection.execute("SELECT pg_advisory_lock($1)", _lock_id(schema))
        try:
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {database.table('nk_migrations')} ("
                "version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for migration in await pending(database):
                async with connection.transaction():
                    await connection.execute(migration.sql.replace("{schema}", schema))
                    await connection.execute(
                        f"INSERT INTO {database.table('nk_migrations')} (version, name) "
                        "VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                applied.append(migration)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _lock_id(schema))
    return applied


async def server_version(database: Database) -> str:
    """The server's ``server_version``."""
    async with database.connection("read the server version") as connection:
        return str(await connection.fetchval("SHOW server_version"))
