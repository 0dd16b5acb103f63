"""``PostgresSagaStore``: saga state in one row per instance, fenced by a lease token.

The row (``<schema>.saga``, see ``migrations/0001_initial.sql``) keeps the record's
flat fields as one JSONB object and copies out what queries need: name,
definition, status, time in status, lease and expiry. A write is one fenced
``UPDATE ... WHERE id = ... AND token = ... AND status = ...`` that merges the changed
fields (``_saga_batch.write_statement``), plus one ``INSERT`` of its outbox rows, in one
transaction (the handler's, when it runs inside :meth:`Database.transaction`). Writes
and creations outside a transaction share one statement per event-loop turn with
those of other sagas; a write that ends a step's ``ctx.db`` transaction is the same
update as a call of ``saga_write`` (``migrations/0002_saga_write_function.sql``),
sent with the COMMIT. Times are the server's clock."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

import asyncpg

from nativekit.backends.postgres._client import NOW, Database
from nativekit.backends.postgres._outbox import PostgresOutbox, insert_outbox
from nativekit.backends.postgres._saga_batch import (
    TurnBatcher,
    Write,
    create_statement,
    fence_statement,
    refusal,
    write_statement,
)
from nativekit.backends.postgres._saga_queries import (
    ACTIVE,
    COLUMNS,
    LIVE,
    REFUSED,
    SagaQueries,
    literals,
    record_of,
)
from nativekit.saga._errors import LeaseLost, SagaNotFound, SagaStateError, UnknownSaga
from nativekit.saga._store.model import SagaRecord, SagaStatus, Transition, Waiting
from nativekit.saga._store.store import (
    definition_key,
    refused_event,
)


class PostgresSagaStore(SagaQueries):
    """Saga store on PostgreSQL.

    Args:
        database: the service's :class:`Database` (pool and running transaction).
    """

    def __init__(self, database: Database) -> None:
        self.db = database
        self.table = database.table("saga")
        # creations and transitions outside a transaction: one statement per loop turn
        self._create = create_statement(self.table)
        self._write = write_statement(self.table)
        self._creations = TurnBatcher(database, self._create, "create sagas")
        self._writes = TurnBatcher(database, self._write, "write saga transitions")
        self._fence_sql = fence_statement(self.table)

    async def create(
        self, record: SagaRecord, *, token: str, lease: float
    ) -> tuple[SagaRecord, bool]:
        """Store a new instance leased to ``token`` (see :class:`SagaStore`)."""
        fields = record.to_fields()
        fields.pop("since", None)
        creation = (
            record.saga_id,
            record.name,
            record.definition,
            record.status.value,
            token,
            float(lease),
            json.dumps(fields),
            fields,
        )
        if not self.db.in_transaction:  # with the other creations of this loop turn
            return await self._creations.call(creation)
        async with self.db.connection("create a saga") as connection:
            answer = (await self._create(connection, [creation]))[record.saga_id]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def get(self, saga_id: str) -> SagaRecord | None:
        """The instance, or None."""
        async with self.db.connection("read a saga") as connection:
            row = await connection.fetchrow(
                f"SELECT {COLUMNS} FROM {self.table} WHERE id = $1 AND {LIVE}", saga_id
            )
        return record_of(row) if row is not None else None

    async def status(self, saga_id: str) -> SagaStatus | None:
        """Only the instance's status, or None."""
        async with self.db.connection("read a saga's status") as connection:
            value = await connection.fetchval(
                f"SELECT status FROM {self.table} WHERE id = $1 AND {LIVE}", saga_id
            )
        return SagaStatus(value) if value is not None else None

    async def write(
        self,
        saga_id: str,
        token: str,
        change: Transition,
        *,
        current: SagaStatus,
        name: str,
        definition: str,
        lease: float,
        retention: float,
    ) -> None:
        """Apply ``change`` if ``token`` holds the lease; extend the lease or release it."""
        new = change.status or current
        write: Write = (
            saga_id,
            token,
            current.value,
            json.dumps(change.fields),
            float(change.lease if change.lease is not None else lease),
            float(retention),
            new.value,
            change.release,
            new.active,
            new.finished,
            json.dumps(list(change.release_if_any)),
        )
        if not change.outbox and not self.db.in_transaction:  # with this turn's others
            await self._writes.call(write)
            return
        lent = self.db.lent
        if lent is not None and not change.outbox:
            # the step's transaction ends with this write: write, COMMIT, reset at once
            call = literals((*write[:10], list(change.release_if_any)))
            try:
                await lent.end_with(f"SELECT {self.db.table('saga_write')}({call})")
                return
            except asyncpg.PostgresError as exc:
                if exc.sqlstate != REFUSED:
                    with self.db.translated("write a saga transition"):
                        raise
            raise refusal(await self._fence_state(saga_id), saga_id, token, current.value)
        async with self.db.connection("write a saga transition") as connection:
            if self.db.in_transaction:
                answer = (await self._write(connection, [write]))[saga_id]
                if answer is None:
                    await insert_outbox(connection, self.db, saga_id, change.outbox)
            else:
                async with connection.transaction():
                    answer = (await self._write(connection, [write]))[saga_id]
                    if answer is None:
                        await insert_outbox(connection, self.db, saga_id, change.outbox)
        if answer is not None:
            raise answer

    async def _fence_state(self, saga_id: str) -> Any:
        """The token and status of a saga, read on a connection of its own (the joined
        transaction that a refused write ended is gone)."""
        pool = await self.db.pool("read a saga's lease")
        with self.db.translated("read a saga's lease"):
            async with pool.acquire() as connection:
                return await connection.fetchrow(self._fence_sql, [saga_id])

    async def claim(
        self, saga_id: str, token: str, *, lease: float, force: bool = False
    ) -> SagaRecord:
        """Lease the instance to ``token`` if its lease expired (always with ``force``)."""
        guard = "" if force else f" AND {ACTIVE} AND (lease_until IS NULL OR lease_until <= {NOW})"
        async with self.db.connection("claim a saga") as connection:
            row = await connection.fetchrow(
                f"UPDATE {self.table} SET token = $2, lease_until = {NOW} + $3 "
                f"WHERE id = $1 AND {LIVE}{guard} RETURNING {COLUMNS}",
                saga_id,
                token,
                lease,
            )
            if row is not None:
                return record_of(row)
            exists = await connection.fetchval(
                f"SELECT 1 FROM {self.table} WHERE id = $1 AND {LIVE}", saga_id
            )
        if exists is None:
            raise SagaNotFound(f"no saga instance with id {saga_id!r}")
        raise LeaseLost(f"saga {saga_id!r} is leased to another runner or not claimable")

    async def claim_expired(
        self, known: Collection[str], tokens: Callable[[], str], *, lease: float, limit: int
    ) -> list[SagaRecord]:
        """Claim up to ``limit`` active instances of known definitions whose lease expired
        (``FOR UPDATE SKIP LOCKED``: replicas recovering at once take different sagas)."""
        if not known:
            return []
        pairs = [key.rpartition(":") for key in known]
        names, definitions = [p[0] for p in pairs], [p[2] for p in pairs]
        pick = f"""
            SELECT id FROM {self.table}
            WHERE {ACTIVE} AND lease_until <= {NOW}
              AND (name, definition) IN (SELECT * FROM unnest($1::text[], $2::text[]))
            ORDER BY lease_until LIMIT $3 FOR UPDATE SKIP LOCKED"""
        take = f"""
            UPDATE {self.table} AS s SET token = c.token, lease_until = {NOW} + $3
            FROM unnest($1::text[], $2::text[]) AS c(id, token) WHERE s.id = c.id
            RETURNING s.fields::text AS fields, s.status, s.since, s.token, s.lease_until"""
        async with (
            self.db.connection("claim expired sagas") as connection,
            connection.transaction(),
        ):
            ids = [row["id"] for row in await connection.fetch(pick, names, definitions, limit)]
            if not ids:
                return []
            rows = await connection.fetch(take, ids, [tokens() for _ in ids], lease)
        return [record_of(row) for row in rows]

    async def renew(self, leases: Sequence[tuple[str, str]], *, lease: float) -> list[bool]:
        """Extend the leases ``(saga_id, token)``; False where the token is stale."""
        if not leases:
            return []
        ids, tokens = [i for i, _ in leases], [t for _, t in leases]
        async with self.db.connection("renew saga leases") as connection:
            rows = await connection.fetch(
                f"UPDATE {self.table} AS s SET lease_until = {NOW} + $3 "
                "FROM unnest($1::text[], $2::text[]) AS l(id, token) "
                f"WHERE s.id = l.id AND s.token = l.token AND s.{ACTIVE} RETURNING s.id",
                ids,
                tokens,
                lease,
            )
        renewed = {row["id"] for row in rows}
        return [saga_id in renewed for saga_id in ids]

    async def claim_reply(
        self,
        saga_id: str,
        wait: Waiting,
        token: str,
        *,
        lease: float,
        known: Collection[str],
        reply: str = "",
    ) -> SagaRecord | None:
        """Lease the instance to ``token`` only while it waits for exactly ``wait``'s reply
        (a group member's reply is stored; None while other members still wait)."""
        member = f"wait:{wait.step}"
        async with (
            self.db.connection("claim a saga for a reply") as connection,
            connection.transaction(),
        ):
            row = await connection.fetchrow(
                f"SELECT name, definition, status, fields->>'wait' AS wait, "
                f"fields->>$2 AS member FROM {self.table} WHERE id = $1 AND {LIVE} FOR UPDATE",
                saga_id,
                member,
            )
            if row is None:
                raise UnknownSaga(saga_id)
            stored = Waiting.decode(row["wait"])
            alone = stored is not None and stored.matches(wait)
            if not alone:
                stored = Waiting.decode(row["member"])
            if not SagaStatus(row["status"]).active or stored is None or not stored.matches(wait):
                raise LeaseLost(f"saga {saga_id!r} no longer waits for that reply")
            if definition_key(row["name"], row["definition"]) not in known:
                raise UnknownSaga(saga_id)
            if not alone:
                waiting = await connection.fetchval(
                    f"UPDATE {self.table} SET fields = fields || jsonb_build_object("
                    "$2::text, '', $3::text, $4::text) WHERE id = $1 RETURNING ("
                    "SELECT count(*) FROM jsonb_each_text(fields) AS f "
                    "WHERE f.key LIKE 'wait:%' AND f.value <> '')",
                    saga_id,
                    member,
                    f"reply:{wait.step}",
                    reply,
                )
                if waiting:
                    return None
            claimed = await connection.fetchrow(
                f"UPDATE {self.table} SET token = $2, lease_until = {NOW} + $3 "
                f"WHERE id = $1 RETURNING {COLUMNS}",
                saga_id,
                token,
                lease,
            )
        return record_of(claimed)

    async def signal(self, saga_id: str, event: str, payload: str) -> tuple[bool, bool]:
        """Store ``event`` once; release the lease of an active instance that awaits it
        (one transaction, the row locked, so a concurrent write or signal waits)."""
        field = f"event:{event}"
        async with (
            self.db.connection("signal a saga") as connection,
            connection.transaction(),
        ):
            row = await connection.fetchrow(
                f"SELECT status, fields ? $2 AS seen, fields->>'awaiting' AS awaiting "
                f"FROM {self.table} WHERE id = $1 AND {LIVE} FOR UPDATE",
                saga_id,
                field,
            )
            if row is None:
                raise SagaNotFound(f"no saga instance with id {saga_id!r}")
            status = SagaStatus(row["status"])
            if status.finished:
                raise SagaStateError(refused_event(saga_id, event, status))
            if row["seen"]:
                return False, False
            wake = status.active and event in (json.loads(row["awaiting"] or "[]") or [])
            await connection.execute(
                f"UPDATE {self.table} SET"
                " fields = fields || jsonb_build_object($2::text, $3::text),"
                f" token = CASE WHEN $4 THEN NULL ELSE token END,"
                f" lease_until = CASE WHEN $4 THEN {NOW} ELSE lease_until END WHERE id = $1",
                saga_id,
                field,
                payload,
                wake,
            )
        return True, wake

    def outbox(self, *, consumer: str, claim_after: float) -> PostgresOutbox:
        """The outbox table, read by the relay ``consumer`` (see :class:`PostgresOutbox`)."""
        return PostgresOutbox(self.db, consumer=consumer, claim_after=claim_after)

    async def ping(self) -> None:
        """Raise :class:`nativekit.BackendUnavailable` if PostgreSQL does not answer."""
        await self.db.ping()

    async def aclose(self) -> None:
        """Wait for creations in flight; the pool belongs to the service's
        :class:`Database`."""
        await self._creations.aclose()
        await self._writes.aclose()
