"""``Transaction``: the database transaction a saga step or message handler is handed.

With ``NATIVEKIT_DATABASE_URL`` set, a step reads ``ctx.db`` and a consumer or
command handler declares a parameter annotated ``Transaction``. What the code
writes there commits in one transaction with what nativekit records about it (the
saga transition, the DONE mark of the message, the command's reply, outbox
entries), or is rolled back with it. The transaction begins on the first
statement, so code that never touches it costs nothing.

Without a database backend the object still exists, and using it raises
:class:`~nativekit.ConfigError` saying what to set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from nativekit.errors import ConfigError


class Transaction(Protocol):
    """The handler's view: run statements (asyncpg style, ``$1`` placeholders)."""

    async def execute(self, query: str, *args: Any) -> str:
        """Run a statement; returns its status (``"INSERT 0 1"``)."""
        ...

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        """Run a statement once per argument tuple."""
        ...

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """Rows of a query (mapping-like records)."""
        ...

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """The first row of a query, or None."""
        ...

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first column of the first row, or None."""
        ...

    async def connection(self) -> Any:
        """The driver's connection inside the transaction (an ``asyncpg.Connection``), for
        what the methods above do not cover (``copy_records_to_table``, ...)."""
        ...

    async def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` once this transaction has committed; never if it rolls back.

        For effects outside the database that must not be seen before the rows are,
        such as dropping cached reads of them: dropped before the commit, a read in
        between would cache the old rows again. Begins the transaction if no statement
        did yet. A callback that raises is logged; the commit stands.
        """
        ...


class TransactionScope(Transaction, Protocol):
    """The runner's view of a handler's transaction: it joins its own writes, then ends it."""

    @property
    def begun(self) -> bool:
        """True once the handler ran a statement (the transaction is open)."""
        ...

    def joined(self) -> AbstractContextManager[None]:
        """While entered, the stores of the backend write in this transaction."""
        ...

    async def commit(self) -> None:
        """Commit (the handler's writes and the stores' together)."""
        ...

    async def close(self) -> None:
        """Roll back unless committed, and give the connection back."""
        ...

    @property
    def statements_only(self) -> bool:
        """True when the handler ran statements through the methods of :class:`Transaction`
        only (not the driver's connection): the next such transaction may be begun before
        its handler runs (:meth:`chain`)."""
        ...

    def chain(self) -> None:
        """Ask that a store write ending this transaction also begin the next one, on the
        same connection and in the same round trip (taken with :meth:`following`)."""
        ...

    def following(self) -> TransactionScope | None:
        """After the commit: the transaction :meth:`chain` began (not yet ``begun``: no
        statement of a handler ran in it), or None. The caller closes or commits it."""
        ...


#: Makes a fresh, not yet begun transaction; None when the backend has none.
TransactionFactory = Callable[[], TransactionScope]


class NoTransaction:
    """What handlers get without a database backend: every use is a configuration error."""

    def _refuse(self) -> ConfigError:
        return ConfigError(
            "this handler used its database transaction (ctx.db / a Transaction parameter), "
            "but no database is configured: set NATIVEKIT_DATABASE_URL=postgresql://... so "
            "sagas, DONE marks and the outbox live in PostgreSQL with your tables."
        )

    async def execute(self, query: str, *args: Any) -> str:
        """Raises ConfigError."""
        raise self._refuse()

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        """Raises ConfigError."""
        raise self._refuse()

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        """Raises ConfigError."""
        raise self._refuse()

    async def fetchrow(self, query: str, *args: Any) -> Any:
        """Raises ConfigError."""
        raise self._refuse()

    async def fetchval(self, query: str, *args: Any) -> Any:
        """Raises ConfigError."""
        raise self._refuse()

    async def connection(self) -> Any:
        """Raises ConfigError."""
        raise self._refuse()

    async def after_commit(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Raises ConfigError."""
        raise self._refuse()


NO_TRANSACTION = NoTransaction()
