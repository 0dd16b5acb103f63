"""The read side of ``PostgresSagaStore``: operator listings, counts, retention."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from nativekit.backends.postgres._client import NOW, Database
from nativekit.saga._store.model import Page, SagaRecord, SagaStatus
from nativekit.saga._store.store import UNFINISHED, decode_cursor, encode_cursor

ACTIVE = "status IN ('RUNNING', 'COMPENSATING')"
LIVE = f"(expires IS NULL OR expires > {NOW})"
COLUMNS = "fields::text AS fields, status, since, token, lease_until"
#: SQLSTATE raised by ``saga_write`` (migration 0002) when the fenced update matched no row.
REFUSED = "NKL01"


def _literal(value: object) -> str:
    """``value`` as an SQL literal. Strings are escape strings (``E'...'``) with every
    backslash and quote doubled, read the same whatever ``standard_conforming_strings``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"'{float(value)!r}'::float8"
    if isinstance(value, str):
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(value, list):
        return f"ARRAY[{', '.join(_literal(v) for v in value)}]::text[]"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def literals(args: tuple[object, ...]) -> str:
    """The arguments of a ``saga_write`` call, as literals (a statement sent together
    with COMMIT in one simple-protocol message takes no parameters)."""
    return ", ".join(_literal(v) for v in args)


def record_of(row: Any) -> SagaRecord:
    fields: dict[str, str] = json.loads(row["fields"])
    fields["status"] = row["status"]  # the column is the truth; the JSON copy is not updated
    fields["since"] = repr(row["since"])
    if row["token"]:
        fields["token"] = row["token"]
    if row["lease_until"] is not None:  # also a released lease (no token), as on Redis
        fields["lease"] = repr(row["lease_until"] * 1000)
    return SagaRecord.from_fields(fields)


class SagaQueries:
    """Queries over many instances, from the indexed columns (mixed into the store)."""

    db: Database
    table: str

    async def list(
        self,
        *,
        status: SagaStatus | None = None,
        name: str | None = None,
        older_than: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Instances by time in their status, oldest first (indexed on status/name, since)."""
        after = decode_cursor(cursor)
        where: list[str] = [LIVE]
        args: list[object] = []
        for column, value in (("status", status.value if status else None), ("name", name)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        if older_than is not None:
            args.append(older_than)
            where.append(f"since <= {NOW} - ${len(args)}")
        if after is not None:
            args += [after[0], after[1]]
            where.append(f"(since, id) > (${len(args) - 1}, ${len(args)})")
        args.append(limit + 1)
        sql = (
            f"SELECT {COLUMNS} FROM {self.table} WHERE {' AND '.join(where)} "
            f"ORDER BY since, id LIMIT ${len(args)}"
        )
        async with self.db.connection("list sagas") as connection:
            rows = await connection.fetch(sql, *args)
        items = [record_of(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor((items[-1].since, items[-1].saga_id)) if more else None)

    async def live_definitions(self, name: str) -> dict[str, int]:
        """Count of RUNNING/COMPENSATING instances of saga ``name`` per definition hash."""
        async with self.db.connection("count live definitions") as connection:
            rows = await connection.fetch(
                f"SELECT definition, count(*) AS n FROM {self.table} "
                f"WHERE name = $1 AND {ACTIVE} GROUP BY definition",
                name,
            )
        return {row["definition"]: int(row["n"]) for row in rows}

    async def backlog(self) -> int:
        """Active instances whose lease expired and nobody has claimed yet."""
        async with self.db.connection("count the saga backlog") as connection:
            value = await connection.fetchval(
                f"SELECT count(*) FROM {self.table} WHERE {ACTIVE} AND lease_until <= {NOW}"
            )
        return int(value)

    async def delete_expired(self, batch: int) -> int:
        """Delete up to ``batch`` finished sagas past their retention; returns how many."""
        async with self.db.connection("delete expired sagas") as connection:
            done = await connection.execute(
                f"DELETE FROM {self.table} WHERE id IN (SELECT id FROM {self.table} "
                f"WHERE expires <= {NOW} LIMIT $1 FOR UPDATE SKIP LOCKED)",
                batch,
            )
        return int(done.rpartition(" ")[2])

    async def counts(self, names: Collection[str]) -> dict[tuple[str, SagaStatus], int]:
        """Unfinished instances per (saga name, status), from the (name, status, ...) index.

        Unfinished rows never carry an expiry, so no retention filter is needed.
        """
        found = {(name, status): 0 for name in names for status in UNFINISHED}
        if not found:
            return found
        async with self.db.connection("count sagas per status") as connection:
            rows = await connection.fetch(
                f"SELECT name, status, count(*) AS n FROM {self.table} "
                "WHERE name = ANY($1::text[]) AND status = ANY($2::text[]) GROUP BY name, status",
                list(names),
                [status.value for status in UNFINISHED],
            )
        for row in rows:
            found[(row["name"], SagaStatus(row["status"]))] = int(row["n"])
        return found
