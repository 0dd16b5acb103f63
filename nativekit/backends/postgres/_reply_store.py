"""``PostgresReplyStore``: the replies a participant gave, in ``<schema>.reply``.

A row holds either a worker's claim (``token``, leased until ``expires``) or the
answer (``reply``, kept until ``expires``); an expired row counts as absent.
"""

from __future__ import annotations

import uuid

from nativekit.backends.postgres._client import NOW, Database
from nativekit.messaging._commands.reply_store import StoredReply


class PostgresReplyStore:
    """Reply store on PostgreSQL for one ``namespace`` (the service).

    Args:
        database: the service's :class:`Database`.
        namespace: the keys' namespace.
    """

    def __init__(self, database: Database, *, namespace: str) -> None:
        self.db = database
        self.namespace = namespace
        self.table = database.table("reply")

    async def claim(self, key: str, *, lease: float) -> str | StoredReply | None:
        """A token when the caller now owns ``key``; the reply when answered; None if busy."""
        token = uuid.uuid4().hex
        async with self.db.connection("claim a command") as connection:
            row = await connection.fetchrow(
                f"INSERT INTO {self.table} AS r (namespace, key, token, reply, expires) "
                f"VALUES ($1, $2, $3, NULL, {NOW} + $4) "
                "ON CONFLICT (namespace, key) DO UPDATE SET token = excluded.token, "
                f"reply = NULL, expires = excluded.expires WHERE r.expires <= {NOW} "
                "RETURNING token",
                self.namespace,
                key,
                token,
                lease,
            )
            if row is not None:
                return token
            reply = await connection.fetchval(
                f"SELECT reply FROM {self.table} WHERE namespace = $1 AND key = $2",
                self.namespace,
                key,
            )
        return StoredReply.decode(reply) if reply is not None else None

    async def finish(self, key: str, token: str, reply: StoredReply, *, retain: float) -> bool:
        """Store ``reply`` for ``key`` if ``token`` still owns it (or nobody does)."""
        async with self.db.connection("store a command reply") as connection:
            row = await connection.fetchrow(
                f"INSERT INTO {self.table} AS r (namespace, key, token, reply, expires) "
                f"VALUES ($1, $2, NULL, $4, {NOW} + $5) "
                "ON CONFLICT (namespace, key) DO UPDATE SET token = NULL, "
                "reply = excluded.reply, expires = excluded.expires "
                f"WHERE r.expires <= {NOW} OR r.token = $3 RETURNING 1",
                self.namespace,
                key,
                token,
                reply.encode(),
                retain,
            )
        return row is not None

    async def release(self, key: str, token: str) -> None:
        """Give ``key`` up without an answer (the command will be handled again)."""
        async with self.db.connection("release a command") as connection:
            await connection.execute(
                f"DELETE FROM {self.table} WHERE namespace = $1 AND key = $2 AND token = $3",
                self.namespace,
                key,
                token,
            )

    async def renew(self, key: str, token: str, *, lease: float) -> bool:
        """Extend ``token``'s hold of ``key``; False when ``token`` no longer holds it."""
        async with self.db.connection("renew a command claim") as connection:
            done = await connection.execute(
                f"UPDATE {self.table} SET expires = {NOW} + $4 WHERE namespace = $1 "
                f"AND key = $2 AND token = $3 AND expires > {NOW}",
                self.namespace,
                key,
                token,
                lease,
            )
        return bool(done == "UPDATE 1")

    async def delete_expired(self, batch: int) -> int:
        """Delete up to ``batch`` expired rows; returns how many."""
        async with self.db.connection("delete expired replies") as connection:
            done = await connection.execute(
                f"DELETE FROM {self.table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {self.table} "
                f"WHERE expires <= {NOW} LIMIT $1 FOR UPDATE SKIP LOCKED))",
                batch,
            )
        return int(done.rpartition(" ")[2])
