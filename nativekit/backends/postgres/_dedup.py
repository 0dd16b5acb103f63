"""``PostgresDedupStore``: consumer DONE marks in ``<schema>.dedup``, one statement per batch.

A row is ``(namespace, key)`` with a state letter (``P`` in progress, ``D`` done,
``X`` dead), a fencing token from a sequence and an expiry on the server clock; an
expired row counts as absent. Inside :meth:`Database.transaction` a finish joins
the handler's transaction, so the DONE mark commits with the handler's writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from nativekit.backends.postgres._client import NOW, Database
from nativekit.messaging._dedup import Claim, ClaimStatus, FinalState

_STATUS = {"D": ClaimStatus.DONE, "X": ClaimStatus.DEAD, "P": ClaimStatus.BUSY}
_NAMES = {"P": "IN_PROGRESS", "D": "DONE", "X": "DEAD"}


class PostgresDedupStore:
    """Dedup store on PostgreSQL for one ``namespace`` (a consumer group).

    Args:
        database: the service's :class:`Database`.
        namespace: the keys' namespace.
    """

    def __init__(self, database: Database, *, namespace: str) -> None:
        self.db = database
        self.namespace = namespace
        self.table = database.table("dedup")
        self._claim = f"""
            INSERT INTO {self.table} AS d (namespace, key, state, token, expires)
            SELECT $1, k, 'P', nextval('{database.table("dedup_token")}'), {NOW} + $3
            FROM unnest($2::text[]) AS k ORDER BY k
            ON CONFLICT (namespace, key) DO UPDATE SET state = 'P', token = excluded.token,
                expires = excluded.expires
            WHERE d.expires <= {NOW}
            RETURNING key, token"""
        self._finish = f"""
            INSERT INTO {self.table} AS d (namespace, key, state, token, expires)
            SELECT $1, k, $4::text, t, {NOW} + $5
            FROM unnest($2::text[], $3::bigint[]) AS c(k, t) ORDER BY k
            ON CONFLICT (namespace, key) DO UPDATE SET state = excluded.state,
                token = excluded.token, expires = excluded.expires
            WHERE d.expires <= {NOW} OR (d.state = 'P' AND d.token = excluded.token)
            RETURNING key"""

    async def claim_many(self, keys: Sequence[str], *, lease: float) -> list[Claim]:
        """Claim each free key for ``lease`` seconds; report the others' states."""
        if not keys:
            return []
        unique = sorted(set(keys))
        async with self.db.connection("claim messages") as connection:
            rows = await connection.fetch(self._claim, self.namespace, unique, lease)
            claimed = {row["key"]: int(row["token"]) for row in rows}
            others = [k for k in unique if k not in claimed]
            states: dict[str, str] = {}
            if others:
                found = await connection.fetch(
                    f"SELECT key, state FROM {self.table} WHERE namespace = $1 "
                    "AND key = ANY($2::text[])",
                    self.namespace,
                    others,
                )
                states = {row["key"]: str(row["state"]) for row in found}
        out: list[Claim] = []
        for key in keys:
            token = claimed.pop(key, None)  # a key twice in one batch: the second is BUSY
            if token is not None:
                out.append(Claim(key, ClaimStatus.CLAIMED, token))
            else:
                out.append(Claim(key, _STATUS.get(states.get(key, "P"), ClaimStatus.BUSY)))
        return out

    async def finish_many(
        self, claims: Sequence[Claim], *, retain: float, state: FinalState = FinalState.DONE
    ) -> list[bool]:
        """Mark claims DONE (or DEAD) for ``retain`` seconds; False where the lease was lost."""
        if not claims:
            return []
        async with self.db.connection("finish messages") as connection:
            rows = await connection.fetch(
                self._finish,
                self.namespace,
                [c.key for c in claims],
                [c.token for c in claims],
                state.value,
                retain,
            )
        done = {row["key"] for row in rows}
        return [c.key in done for c in claims]

    async def renew_many(self, claims: Sequence[Claim], *, lease: float) -> list[bool]:
        """Extend leases still held; False where a claim was lost."""
        if not claims:
            return []
        async with self.db.connection("renew message leases") as connection:
            rows = await connection.fetch(
                f"UPDATE {self.table} AS d SET expires = {NOW} + $4 "
                "FROM unnest($2::text[], $3::bigint[]) AS c(k, t) "
                f"WHERE d.namespace = $1 AND d.key = c.k AND d.token = c.t "
                f"AND d.state = 'P' AND d.expires > {NOW} RETURNING d.key",
                self.namespace,
                [c.key for c in claims],
                [c.token for c in claims],
                lease,
            )
        renewed = {row["key"] for row in rows}
        return [c.key in renewed for c in claims]

    async def release_many(self, claims: Sequence[Claim]) -> None:
        """Drop leases still held (the message was not handled and will be redelivered)."""
        if not claims:
            return
        async with self.db.connection("release message leases") as connection:
            await connection.execute(
                f"DELETE FROM {self.table} AS d USING unnest($2::text[], $3::bigint[]) AS c(k, t) "
                "WHERE d.namespace = $1 AND d.key = c.k AND d.token = c.t AND d.state = 'P'",
                self.namespace,
                [c.key for c in claims],
                [c.token for c in claims],
            )

    async def states(self, keys: Sequence[str]) -> list[str | None]:
        """Operator view: ``"IN_PROGRESS"``, ``"DONE"``, ``"DEAD"`` or None (no record)."""
        async with self.db.connection("read message states") as connection:
            rows = await connection.fetch(
                f"SELECT key, state FROM {self.table} WHERE namespace = $1 "
                f"AND key = ANY($2::text[]) AND expires > {NOW}",
                self.namespace,
                list(keys),
            )
        found = {row["key"]: _NAMES[str(row["state"])] for row in rows}
        return [found.get(k) for k in keys]

    async def revive(self, key: str) -> bool:
        """Forget ``key``'s DEAD mark so its message is handled again (True if it was DEAD)."""
        async with self.db.connection("revive a message") as connection:
            done = await connection.execute(
                f"DELETE FROM {self.table} WHERE namespace = $1 AND key = $2 AND state = 'X' "
                f"AND expires > {NOW}",
                self.namespace,
                key,
            )
        return bool(done == "DELETE 1")

    async def delete_expired(self, batch: int) -> int:
        """Delete up to ``batch`` expired marks of every namespace; returns how many."""
        async with self.db.connection("delete expired marks") as connection:
            done = await connection.execute(
                f"DELETE FROM {self.table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {self.table} "
                f"WHERE expires <= {NOW} LIMIT $1 FOR UPDATE SKIP LOCKED))",
                batch,
            )
        return int(done.rpartition(" ")[2])

    async def ping(self) -> None:
        """Raise BackendUnavailable when PostgreSQL does not answer."""
        await self.db.ping()

    async def aclose(self) -> None:
        """The pool belongs to the service's :class:`Database`."""
