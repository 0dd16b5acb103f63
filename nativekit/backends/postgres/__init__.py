"""The PostgreSQL backend (asyncpg): saga state, the outbox, consumer dedup, command replies.

Chosen by ``NATIVEKIT_DATABASE_URL=postgresql://...``. Every store runs its
statements in the transaction a handler was given when there is one
(:meth:`Database.transaction`), so the handler's own writes commit together with
the saga transition, the DONE mark and the outbox rows. The schema comes from
versioned migrations shipped in ``migrations/`` (``nativekit db upgrade``).
Importing this package imports asyncpg.
"""

from nativekit.backends.postgres._client import Database
from nativekit.backends.postgres._dedup import PostgresDedupStore
from nativekit.backends.postgres._migrations import (
    Migration,
    current_version,
    latest_version,
    migrations,
    pending,
    server_version,
    upgrade,
)
from nativekit.backends.postgres._outbox import PostgresOutbox
from nativekit.backends.postgres._reply_store import PostgresReplyStore
from nativekit.backends.postgres._saga_store import PostgresSagaStore

__all__ = [
    "current_version",
    "Database",
    "latest_version",
    "Migration",
    "migrations",
    "pending",
    "PostgresDedupStore",
    "PostgresOutbox",
    "PostgresReplyStore",
    "PostgresSagaStore",
    "server_version",
    "upgrade",
]
