"""``PostgresOutbox``: the outbox table, relayed safely by any number of replicas.

A transition's entries are inserted in its transaction, with a ``NOTIFY`` on the
``<schema>_outbox`` channel that PostgreSQL delivers at commit: relays listening
on it (:meth:`PostgresOutbox.listen`) read at once, and poll as the fallback.

A read takes rows for ``claim_after`` seconds (``taken_until``) with ``FOR UPDATE
SKIP LOCKED``, so concurrent relays never take the same row; a row of a relay that
died is taken again once its time ran out. Per-saga order: a row is only taken
when no earlier row of its saga is still taken by another relay, and reads
serialize on a transaction-level advisory lock so that check sees the takes of
every other relay (the publishing itself runs in parallel).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Collection, Sequence
from typing import Any

import asyncpg

from nativekit.backends.postgres._client import NOW, Database
from nativekit.errors import BackendUnavailable
from nativekit.saga._store.outbox import Batch, OutboxEntry


async def insert_outbox(
    connection: asyncpg.Connection, db: Database, key: str, entries: Sequence[str]
) -> None:
    """Insert encoded entries for saga (or handler) ``key`` and notify relays at commit."""
    await connection.execute(
        f"INSERT INTO {db.table('outbox')} (saga_id, entry, created) "
        f"SELECT $1, e, {NOW} FROM unnest($2::text[]) WITH ORDINALITY AS t(e, n) ORDER BY n",
        key,
        list(entries),
    )
    await connection.execute("SELECT pg_notify($1, '')", f"{db.schema}_outbox")


class PostgresOutbox:
    """The outbox as seen by one relay (``consumer`` names it in ``taken_by``)."""

    def __init__(self, db: Database, *, consumer: str, claim_after: float = 10.0) -> None:
        self.db = db
        self.consumer = consumer
        self.claim_after = claim_after
        self.table = db.table("outbox")
        self.channel = f"{db.schema}_outbox"
        self._lock = zlib.crc32(f"nativekit-outbox:{db.schema}".encode()) - 2**31
        self._listener: asyncpg.Connection | None = None
        self._callback: Callable[..., None] | None = None

    async def start(self) -> None:
        """Check the table is there (the schema is migrated)."""
        async with self.db.connection("open the outbox") as connection:
            await connection.fetchval(f"SELECT 1 FROM {self.table} LIMIT 1")

    async def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever a transaction that wrote entries commits (any replica)."""
        self._callback = lambda *_: wake()
        try:
            pool = await self.db.pool()
            with self.db.translated("LISTEN for outbox entries"):
                listener = await pool.acquire()
                try:
                    await listener.add_listener(self.channel, self._callback)
                except BaseException:
                    await pool.release(listener)
                    raise
        except BackendUnavailable:
            return  # the relay polls; the next start listens again
        self._listener = listener

    async def unlisten(self) -> None:
        """Stop listening."""
        if self._listener is not None:
            listener, self._listener = self._listener, None
            pool = await self.db.pool()
            try:
                if self._callback is not None:
                    await listener.remove_listener(self.channel, self._callback)
            finally:
                await pool.release(listener)

    async def read(self, limit: int, saga_ids: Collection[str] | None = None) -> Batch:
        """Up to ``limit`` rows nobody holds, oldest first, none ahead of an earlier row of
        its saga held by another relay; ``saga_ids`` restricts the read to those sagas."""
        only = "AND o.saga_id = ANY($4::text[])" if saga_ids is not None else ""
        sql = f"""
            UPDATE {self.table} SET taken_by = $1, taken_until = {NOW} + $2
            WHERE seq IN (
                SELECT o.seq FROM {self.table} o
                WHERE (o.taken_until IS NULL OR o.taken_until <= {NOW}) {only}
                  AND NOT EXISTS (
                      SELECT 1 FROM {self.table} e
                      WHERE e.saga_id = o.saga_id AND e.seq < o.seq
                        AND e.taken_until > {NOW} AND e.taken_by <> $1)
                ORDER BY o.seq LIMIT $3 FOR UPDATE SKIP LOCKED)
            RETURNING seq, entry"""
        args: list[Any] = [self.consumer, self.claim_after, limit]
        if saga_ids is not None:
            args.append(list(saga_ids))
        async with self.db.connection("read the outbox") as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", self._lock)
            rows = await connection.fetch(sql, *args)
        rows = sorted(rows, key=lambda r: r["seq"])
        return Batch([OutboxEntry.decode(r["entry"]) for r in rows], [r["seq"] for r in rows])

    async def ack(self, handles: Sequence[Any]) -> None:
        """Delete published rows."""
        async with self.db.connection("delete published outbox rows") as connection:
            await connection.execute(
                f"DELETE FROM {self.table} WHERE seq = ANY($1::bigint[])", list(handles)
            )

    async def backlog(self) -> tuple[int, float]:
        """Rows not yet deleted, and the age of the oldest one."""
        async with self.db.connection("count the outbox") as connection:
            row = await connection.fetchrow(
                f"SELECT count(*) AS n, min(created) AS c FROM {self.table}"
            )
        if not row["n"]:
            return 0, 0.0
        return int(row["n"]), max(0.0, time.time() - float(row["c"]))
