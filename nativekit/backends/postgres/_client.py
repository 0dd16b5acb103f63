"""The PostgreSQL connection pool of a service (asyncpg) and its error translation.

Every store of this package runs its statements through :meth:`Database.connection`:
inside :meth:`Database.transaction` that is the transaction's own connection, so a
saga transition, a DONE mark or an outbox row written there commits with whatever
the handler wrote in the same transaction, or not at all.
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Protocol

import asyncpg

from nativekit.errors import BackendUnavailable, ConfigError
from nativekit.settings import DatabaseSettings, Settings, mask_url

#: asyncpg/OS errors that mean "the server is not reachable or did not answer".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,
)

#: SQL text of the server's clock in epoch seconds (leases are judged by it).
NOW = "extract(epoch from clock_timestamp())::double precision"


def _ssl(settings: DatabaseSettings) -> ssl.SSLContext | str | None:
    if settings.tls_ca_file is None and settings.tls_cert_file is None:
        return settings.tls  # asyncpg takes libpq's sslmode names
    mode = settings.tls or "verify-full"
    context = ssl.create_default_context(
        cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
    )
    if settings.tls_cert_file is not None:
        context.load_cert_chain(
            str(settings.tls_cert_file),
            str(settings.tls_key_file) if settings.tls_key_file else None,
        )
    if mode in ("prefer", "require", "verify-ca"):
        context.check_hostname = False
    if mode in ("prefer", "require"):
        context.verify_mode = ssl.CERT_NONE
    return context


async def _session_kept(connection: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing to send.

    asyncpg's default resets the session (advisory locks, cursors, LISTEN, settings) on
    every release, one round trip each time. The stores' own statements change no session
    state, so only connections lent to handler code need it, and those are reset where
    they are lent (:func:`reset_lent`) before they go back. An open transaction is still
    rolled back by the pool itself.
    """


async def reset_lent(connection: asyncpg.Connection) -> None:
    """Reset the session of a connection lent to handler code, before it goes back to the
    pool (what asyncpg's pool would otherwise do on every release)."""
    await connection.reset()


class LentTransaction(Protocol):
    """A handler's transaction the runner joined (``PostgresTransaction``): a saga store
    write may end it with its own statement (see ``PostgresTransaction.end_with``)."""

    @property
    def can_end(self) -> bool:
        """True while it is open and may be ended by a statement."""
        ...

    @property
    def ended(self) -> bool:
        """True once committed or rolled back."""
        ...

    async def end_with(self, statement: str) -> None:
        """Run ``statement``, COMMIT and reset the session in one round trip."""
        ...


class Database:
    """A lazily created asyncpg pool plus the transaction of the running task.

    Args:
        settings: the service settings (``database`` group, connect timeout).
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.database.url:
            raise ConfigError("NATIVEKIT_DATABASE_URL is not set; PostgreSQL is not configured.")
        self.settings = settings
        self.url: str = settings.database.url
        self.url_safe = mask_url(self.url)
        self.schema = settings.database.schema_name
        self._pool: asyncpg.Pool | None = None
        self._creating = asyncio.Lock()
        self._current: contextvars.ContextVar[asyncpg.Connection | None] = contextvars.ContextVar(
            f"nativekit-pg-{id(self)}", default=None
        )
        self._lent: contextvars.ContextVar[LentTransaction | None] = contextvars.ContextVar(
            f"nativekit-pg-lent-{id(self)}", default=None
        )

    async def pool(self, operation: str = "connect") -> asyncpg.Pool:
        """The pool (created on first use, for ``operation``: named in errors)."""
        if self._pool is None:
            # concurrent first uses (a burst after an outage at startup) must share one
            # pool: each creating its own would hold pool_size connections apiece
            async with self._creating:
                if self._pool is None:
                    self._pool = await self._create_pool(operation)
        return self._pool

    async def _create_pool(self, operation: str) -> asyncpg.Pool:
        s = self.settings.database
        with self.translated(f"to connect ({operation})"):
            return await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=s.pool_size,
                password=s.password.get_secret_value() if s.password else None,
                ssl=_ssl(s),
                timeout=self.settings.connect_timeout_seconds,
                command_timeout=s.command_timeout_seconds,
                reset=_session_kept,
            )

    @contextmanager
    def translated(self, operation: str) -> Iterator[None]:
        """Turn asyncpg errors into :class:`BackendUnavailable` saying what to check."""
        try:
            yield
        except asyncpg.UndefinedTableError as exc:
            raise BackendUnavailable(
                f"PostgreSQL at {self.url_safe}: {operation} found no nativekit tables in "
                f"schema {self.schema!r} ({exc}); run 'nativekit db upgrade' or set "
                "NATIVEKIT_DATABASE_MIGRATE_ON_START=true."
            ) from exc
        except UNAVAILABLE_ERRORS as exc:
            raise BackendUnavailable(
                f"PostgreSQL at {self.url_safe} failed {operation}: {exc!r}. "
                "Is NATIVEKIT_DATABASE_URL right and the server up?"
            ) from exc
        except asyncpg.PostgresError as exc:
            raise BackendUnavailable(
                f"PostgreSQL at {self.url_safe} refused {operation}: {exc}"
            ) from exc

    @asynccontextmanager
    async def connection(self, operation: str) -> AsyncIterator[asyncpg.Connection]:
        """The running transaction's connection, else one from the pool (errors translated)."""
        current = self._current.get()
        if current is not None:
            lent = self._lent.get()
            if lent is not None and lent.ended:
                raise RuntimeError(f"{operation}: the joined transaction has already ended")
            with self.translated(operation):
                yield current
            return
        pool = await self.pool(operation)
        with self.translated(operation):
            async with pool.acquire() as connection:
                yield connection

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction that the stores of this database join while it is open.

        Nested use joins the outer transaction (one commit at the end of the outer one).
        """
        if self._current.get() is not None:
            yield self._current.get()
            return
        pool = await self.pool()
        with self.translated("begin"):
            connection = await pool.acquire()
        token = self._current.set(connection)
        lent_token = self._lent.set(None)
        try:
            with self.translated("transaction"):
                async with connection.transaction():
                    yield connection
        finally:
            self._lent.reset(lent_token)
            self._current.reset(token)
            try:
                if not connection.is_closed():
                    await reset_lent(connection)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                connection.terminate()  # a new one replaces it
            finally:
                await pool.release(connection)

    @contextmanager
    def joined(
        self, connection: asyncpg.Connection, lent: LentTransaction | None = None
    ) -> Iterator[None]:
        """Run the stores' statements on ``connection`` (a handler's open transaction;
        ``lent``: the runner's view of it, which a saga store write may end)."""
        token = self._current.set(connection)
        lent_token = self._lent.set(lent)
        try:
            yield
        finally:
            self._lent.reset(lent_token)
            self._current.reset(token)

    @property
    def lent(self) -> LentTransaction | None:
        """The handler's transaction joined in this task, if it may be ended by a write."""
        lent = self._lent.get()
        return lent if lent is not None and lent.can_end else None

    @property
    def in_transaction(self) -> bool:
        """True inside :meth:`transaction` in this task."""
        return self._current.get() is not None

    def table(self, name: str) -> str:
        """``schema.name``: the qualified name of one of nativekit's tables."""
        return f"{self.schema}.{name}"

    async def ping(self) -> None:
        """Raise :class:`BackendUnavailable` if PostgreSQL does not answer."""
        async with self.connection("ping") as connection:
            await connection.fetchval("SELECT 1")

    async def aclose(self) -> None:
        """Close the pool (a later use creates a new one)."""
        self._creating = asyncio.Lock()  # a later use may run on another event loop
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
