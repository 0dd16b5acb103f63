"""``PostgresTransaction``: a handler's transaction, begun on its first statement."""

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
        self._transaction: DriverTransaction | None = None
        self._done = False
        self._after_commit: list[Callable[[], Awaitable[None]]] = []

    @property
    def begun(self) -> bool:
        """True once a statement ran."""
        return self._connection is not None

    async def connection(self) -> asyncpg.Connection:
        """The connection, beginning the transaction on first use."""
        if self._connection is None:
            if self._done:
                raise RuntimeError("this transaction has ended; use the one of the next call")
            pool = await self.db.pool()
            with self.db.translated("begin a transaction"):
                connection = await pool.acquire()
                try:
                    transaction = connection.transaction()
                    await transaction.start()
                except BaseException:
                    await pool.release(connection)
                    raise
            self._connection, self._transaction = connection, transaction
        return self._connection

    async def execute(self, query: str, *args: Any) -> str:
        """Run a statement; returns its status."""
        return str(await (await self.connection()).execute(query, *args))

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per argument tuple."""
        await (await self.connection()).executemany(query, args)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """Rows of a query."""
        return list(await (await self.connection()).fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """The first row, or None."""
        return await (await self.connection()).fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first value, or None."""
        return await (await self.connection()).fetchval(query, *args)

    async def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` once this transaction has committed (never on a rollback)."""
        await self.connection()  # a callback with nothing begun would have no commit to follow
        self._after_commit.append(callback)

    @contextmanager
    def joined(self) -> Iterator[None]:
        """The stores of ``database`` write in this transaction while entered."""
        if self._connection is None:
            yield
            return
        with self.db.joined(self._connection):
            yield

    async def commit(self) -> None:
        """Commit, give the connection back, then call the ``after_commit`` callbacks."""
        if self._transaction is not None:
            with self.db.translated("commit"):
                await self._transaction.commit()
            self._transaction = None
        callbacks, self._after_commit = self._after_commit, []
        await self.close()
        for callback in callbacks:
            try:
                await callback()
            except Exception as exc:  # committed: the caller's work must not look failed
                _log.warning("postgres.after_commit.failed", error=repr(exc))

    async def close(self) -> None:
        """Roll back unless committed; give the connection back."""
        self._done = True
        self._after_commit.clear()  # not committed: rolled back below, or nothing began
        connection, self._connection = self._connection, None
        transaction, self._transaction = self._transaction, None
        if connection is None:
            return
        pool = await self.db.pool()
        try:
            if transaction is not None and not connection.is_closed():
                await transaction.rollback()
            if not connection.is_closed():
                await reset_lent(connection)  # the handler may have changed its session
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            connection.terminate()  # the server rolls back what a dead connection held
        finally:
            await pool.release(connection)
