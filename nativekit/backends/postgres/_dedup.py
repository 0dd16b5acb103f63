"""``PostgresDedupStore``: consumer DONE marks in ``<schema>.dedup``, one statement per batch.

A row is ``(namespace, key)`` with a state letter (``P`` in progress, ``D`` done,
``X`` dead), a fencing token from a sequence, ``expires`` and, for a claim, ``lease``
(times on the server clock). A row past ``expires`` counts as absent; a ``P`` row past
its ``lease`` can be claimed again.

A claim sets ``expires`` once, to its lease plus the store's ``retention``, so that
finishing it with that retention, and renewing its lease, change only unindexed columns
and are HOT updates (``expires`` is indexed for retention; migration 0003). A DONE
mark is therefore kept for the retention and at most one lease longer.

Each statement reads the server clock once and a claim batch takes one ``nextval``:
every key claimed by one batch shares its fencing token. That still fences, because a
token is only ever compared together with its key, and a later claim of any key comes
from a later ``nextval``, so it carries a larger token.

Inside :meth:`Database.transaction` a finish joins the handler's transaction, so the
DONE mark commits with the handler's writes.
"""

from __future__ import annotations

from collections.abc import Sequence

from nativekit.backends.postgres._client import NOW, Database
from nativekit.messaging._dedup import Claim, ClaimStatus, FinalState

_STATUS = {"D": ClaimStatus.DONE, "X": ClaimStatus.DEAD}
_NAMES = {"P": "IN_PROGRESS", "D": "DONE", "X": "DEAD"}
#: the statement's one clock reading (a MATERIALIZED CTE is evaluated once)
_CLOCK = f"n AS MATERIALIZED (SELECT {NOW} AS now"


class PostgresDedupStore:
    """Dedup store on PostgreSQL for one ``namespace`` (a consumer group).

    Args:
        database: the service's :class:`Database`.
        namespace: the keys' namespace.
        retention: the seconds its consumer keeps DONE marks; a claim's ``expires``
            covers its lease and this, so that a finish with this retention leaves the
            indexed column alone (another retention is kept exactly, at an index write).
    """

    def __init__(self, database: Database, *, namespace: str, retention: float = 0.0) -> None:
        self.db = database
        self.namespace = namespace
        self.retention = retention
        self.table = database.table("dedup")
        # one row with the batch's token, then one per key not claimed, with its state
        # from the statement's snapshot: a row another replica wrote meanwhile is not in
        # it and reads as busy (the consumer asks again)
        self._claim = f"""
            WITH {_CLOCK}, nextval('{database.table("dedup_token")}') AS token),
            claimed AS (
                INSERT INTO {self.table} AS d (namespace, key, state, token, expires, lease)
                SELECT $1, k, 'P', n.token, n.now + $3 + $4, n.now + $3
                FROM unnest($2::text[]) AS k, n ORDER BY k
                ON CONFLICT (namespace, key) DO UPDATE SET state = 'P', token = excluded.token,
                    expires = excluded.expires, lease = excluded.lease
                WHERE d.expires <= (SELECT now FROM n)
                    OR (d.state = 'P' AND d.lease <= (SELECT now FROM n))
                RETURNING d.key)
            SELECT NULL AS key, n.token, NULL AS state FROM n
            UNION ALL
            SELECT u.k, NULL, (SELECT s.state FROM {self.table} AS s
                WHERE s.namespace = $1 AND s.key = u.k AND s.expires > n.now)
            FROM unnest($2::text[]) AS u(k), n
            WHERE NOT EXISTS (SELECT FROM claimed AS c WHERE c.key = u.k)"""
        # $6: keep the claim's expires when it already covers the retention (a HOT update);
        # answers the keys not finished (usually none)
        self._finish = f"""
            WITH {_CLOCK}), finished AS (
            INSERT INTO {self.table} AS d (namespace, key, state, token, expires)
            SELECT $1, k, $4::text, t, n.now + $5
            FROM unnest($2::text[], $3::bigint[]) AS c(k, t), n ORDER BY k
            ON CONFLICT (namespace, key) DO UPDATE SET state = excluded.state,
                token = excluded.token, expires = CASE
                    WHEN $6 AND d.expires >= excluded.expires THEN d.expires
                    ELSE excluded.expires END
            WHERE d.expires <= (SELECT now FROM n)
                OR (d.state = 'P' AND d.token = excluded.token)
            RETURNING key)
            SELECT k AS key FROM unnest($2::text[]) AS k
            WHERE NOT EXISTS (SELECT FROM finished AS f WHERE f.key = k)"""
        # expires moves only when the lease would outlast it (a short retention)
        self._renew = f"""
            WITH {_CLOCK})
            UPDATE {self.table} AS d SET lease = n.now + $4,
                expires = GREATEST(d.expires, n.now + $4)
            FROM n, unnest($2::text[], $3::bigint[]) AS c(k, t)
            WHERE d.namespace = $1 AND d.key = c.k AND d.token = c.t
                AND d.state = 'P' AND d.lease > n.now
            RETURNING d.key"""

    async def claim_many(self, keys: Sequence[str], *, lease: float) -> list[Claim]:
        """Claim each free key for ``lease`` seconds; report the others' states."""
        if not keys:
            return []
        async with self.db.connection("claim messages") as connection:
            rows = await connection.fetch(
                self._claim, self.namespace, sorted(set(keys)), lease, self.retention
            )
        # the token's row is told by its NULL key, not by its place (UNION ALL keeps no order)
        token = next(int(row["token"]) for row in rows if row["key"] is None)
        others = {
            row["key"]: _STATUS.get(row["state"], ClaimStatus.BUSY)
            for row in rows
            if row["key"] is not None
        }
        out: list[Claim] = []
        seen: set[str] = set()
        for key in keys:
            if key in others or key in seen:  # a key twice in a batch: the second is BUSY
                out.append(Claim(key, others.get(key, ClaimStatus.BUSY)))
            else:
                seen.add(key)
                out.append(Claim(key, ClaimStatus.CLAIMED, token))
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
                retain == self.retention,
            )
        lost = {row["key"] for row in rows}
        return [c.key not in lost for c in claims]

    async def renew_many(self, claims: Sequence[Claim], *, lease: float) -> list[bool]:
        """Extend leases still held; False where a claim was lost."""
        if not claims:
            return []
        async with self.db.connection("renew message leases") as connection:
            rows = await connection.fetch(
                self._renew,
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
            # a claim whose lease ran out is no record (the next claim takes it); a NULL
            # lease is an older nativekit's claim, whose lease is its expires
            rows = await connection.fetch(
                f"WITH {_CLOCK}) SELECT key, state FROM {self.table}, n WHERE namespace = $1 "
                "AND key = ANY($2::text[]) AND expires > n.now "
                "AND (state <> 'P' OR lease IS NULL OR lease > n.now)",
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
