"""``PostgresTransaction``: a handler's transaction, begun on its first statement.

A step's transaction usually ends with the runner's own write (the step's completion)
followed by COMMIT and the session reset. :meth:`PostgresTransaction.end_with` sends
those three as one message (PostgreSQL's simple query protocol runs them in order and
stops at the first error), so a step that used ``ctx.db`` costs BEGIN, its own
statements and one more round trip. When the runner knows the next step will want a
transaction too (:meth:`PostgresTransaction.chain`), that message ends with BEGIN instead
of the reset and the connection stays with the saga: the next step's transaction is
already open when its handler runs (:meth:`PostgresTransaction.following`), so each step
after the first costs its own statements and one round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg
from asyncpg.transaction import Transaction as DriverTransaction

from nativekit._telemetry.logging import get_logger
from nativekit.backends.postgres._client import Database, reset_lent

_log = get_logger(component="postgres")


class PostgresTransaction:
    """One transaction on a connection of ``database``'s pool (see ``nativekit.Transaction``).

    Statements run through :meth:`Database.translated`, so driver errors arrive as
    :class:`~nativekit.BackendUnavailable`, except errors of the handler's own SQL
    (constraint violations, syntax), which stay asyncpg's so the handler can catch them.
    """

    def __init__(self, database: Database) -> None:
        self.db = database
        self._connection: asyncpg.Connection | None = None
        #: asyncpg's transaction object, when the handler asked for the raw connection
        #: first (so ``connection.transaction()`` nests as a savepoint there)
        self._transaction: DriverTransaction | None = None
        self._open = False  # BEGIN sent, neither COMMIT nor ROLLBACK yet
        self._raw = False  # the handler holds the raw connection: asyncpg's reset at the end
        self._done = False
        self._after_commit: list[Callable[[], Awaitable[None]]] = []
        self._ended_committed = False
        self._used = False  # a statement of the handler ran (else begun in advance, if open)
        self._chain = False  # end_with begins the next transaction (self._next)
        self._next: PostgresTransaction | None = None

    @classmethod
    def _begun_on(cls, database: Database, connection: asyncpg.Connection) -> PostgresTransaction:
        """A transaction already begun with ``BEGIN`` on ``connection``, no statement in it."""
        transaction = cls(database)
        transaction._connection, transaction._open = connection, True
        return transaction

    @property
    def begun(self) -> bool:
        """True once a statement of the handler ran."""
        return self._used

    @property
    def statements_only(self) -> bool:
        """True when statements ran, none through the raw connection."""
        return self._used and not self._raw

    @property
    def ended(self) -> bool:
        """True once committed or rolled back (the connection is no longer usable)."""
        return self._done

    async def _begin(self, *, raw: bool) -> asyncpg.Connection:
        if self._connection is None:
            if self._done:
                raise RuntimeError("this transaction has ended; use the one of the next call")
            pool = await self.db.pool()
            with self.db.translated("begin a transaction"):
                connection = await pool.acquire()
                try:
                    if raw:
                        transaction = connection.transaction()
                        await transaction.start()
                        self._transaction = transaction
                    else:
                        await connection.execute("BEGIN")
                except BaseException:
                    await pool.release(connection)
                    raise
            self._connection, self._open = connection, True
        elif raw and not self._used and self._open:
            # begun in advance with BEGIN (chain): asyncpg's transaction object must begin
            # the transaction itself, so that connection.transaction() nests as a savepoint
            with self.db.translated("begin a transaction"):
                await self._connection.execute("ROLLBACK")
                transaction = self._connection.transaction()
                await transaction.start()
            self._transaction = transaction
        self._used = True
        self._raw = self._raw or raw
        return self._connection

    async def connection(self) -> asyncpg.Connection:
        """The connection, beginning the transaction on first use.

        Begun here, the transaction is asyncpg's own (``connection.transaction()`` nests
        as a savepoint). Begun by a statement of this object's methods, it was begun with
        ``BEGIN``: use ``SAVEPOINT`` statements there, as asyncpg refuses to nest its
        transaction objects in a transaction it did not start.
        """
        return await self._begin(raw=True)

    async def _statements(self) -> asyncpg.Connection:
        return await self._begin(raw=False)

    async def execute(self, query: str, *args: Any) -> str:
        """Run a statement; returns its status."""
        return str(await (await self._statements()).execute(query, *args))

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per argument tuple."""
        await (await self._statements()).executemany(query, args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """Rows of a query."""
        return list(await (await self._statements()).fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """The first row, or None."""
        return await (await self._statements()).fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first value, or None."""
        return await (await self._statements()).fetchval(query, *args)

    async def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` once this transaction has committed (never on a rollback)."""
        await self._statements()  # a callback with nothing begun would have no commit to follow
        self._after_commit.append(callback)

    @contextmanager
    def joined(self) -> Iterator[None]:
        """The stores of ``database`` write in this transaction while entered; a saga
        store write made here may end it (:meth:`end_with`): the runner commits right
        after its write, or rolls back when the write failed."""
        if self._connection is None:
            yield
            return
        with self.db.joined(self._connection, self):
            yield

    @property
    def can_end(self) -> bool:
        """True when :meth:`end_with` may be used (open, begun with ``BEGIN``)."""
        return self._open and self._transaction is None and not self._raw

    def chain(self) -> None:
        """Have :meth:`end_with` begin the next transaction instead of resetting the
        session (the next handler runs on this session, as a step's attempts do)."""
        self._chain = True

    def following(self) -> PostgresTransaction | None:
        """The transaction :meth:`end_with` began after committing (:meth:`chain`)."""
        following, self._next = self._next, None
        return following

    async def end_with(self, statement: str) -> None:
        """Run ``statement`` (SQL without parameters), then COMMIT and reset the session
        (or, after :meth:`chain`, BEGIN the next transaction), in one round trip. If
        anything fails the transaction is rolled back (nothing of it commits) and the
        error raised; either way the transaction has ended."""
        connection = self._connection
        assert connection is not None and self.can_end
        parts = [statement, "COMMIT", connection.get_reset_query().strip().rstrip(";")]
        if self._chain:
            parts.append("BEGIN")  # with the session reset, as if fresh from the pool
        try:
            await connection.execute("; ".join(part for part in parts if part))
        except BaseException:
            await self.close()
            raise
        self._open = False
        self._ended_committed = True  # the callbacks run at commit(), outside joined()
        if self._chain:
            self._done, self._connection = True, None
            self._next = PostgresTransaction._begun_on(self.db, connection)
            return
        await self._release(connection, reset=False)

    async def commit(self) -> None:
        """Commit, give the connection back, then call the ``after_commit`` callbacks."""
        connection = self._connection
        if connection is None or not self._open:
            if self._ended_committed:  # end_with committed it
                await self._committed()
            await self.close()
            return
        reset = True
        if self._transaction is not None:
            with self.db.translated("commit"):
                await self._transaction.commit()
            self._transaction = None
        elif not self._raw:
            with self.db.translated("commit"):
                await connection.execute(f"COMMIT; {connection.get_reset_query()}")
            reset = False
        else:
            with self.db.translated("commit"):
                await connection.execute("COMMIT")
        self._open = False
        await self._release(connection, reset=reset)
        await self._committed()

    async def _committed(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                await callback()
            except Exception as exc:  # committed: the caller's work must not look failed
                _log.warning("postgres.after_commit.failed", error=repr(exc))

    async def close(self) -> None:
        """Roll back unless committed; give the connection back."""
        self._done = True
        self._after_commit.clear()  # not committed: rolled back below, or nothing began
        connection = self._connection
        transaction, self._transaction = self._transaction, None
        if connection is None:
            return
        opened, self._open = self._open, False
        reset = True
        try:
            if transaction is not None and not connection.is_closed():
                await transaction.rollback()
            elif opened and not self._raw and not connection.is_closed():
                await connection.execute(f"ROLLBACK; {connection.get_reset_query()}")
                reset = False
            elif opened and not connection.is_closed():
                await connection.execute("ROLLBACK")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            connection.terminate()  # the server rolls back what a dead connection held
        await self._release(connection, reset=reset)

    async def _release(self, connection: asyncpg.Connection, *, reset: bool) -> None:
        """Give the connection back (reset first unless the last message reset it)."""
        self._done = True
        self._connection = None
        pool = await self.db.pool()
        try:
            if reset and not connection.is_closed():
                await reset_lent(connection)  # the handler may have changed its session
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            connection.terminate()  # a new one replaces it
        finally:
            await pool.release(connection)
