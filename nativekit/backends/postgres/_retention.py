"""Retention on PostgreSQL: finished sagas, DONE marks and replies past their time are
deleted in batches (short transactions, ``FOR UPDATE SKIP LOCKED`` so replicas share it)."""

from __future__ import annotations

import asyncio

from nativekit._lifecycle import cancel_and_wait
from nativekit._telemetry.logging import get_logger
from nativekit.backends.postgres._client import Database
from nativekit.backends.postgres._dedup import PostgresDedupStore
from nativekit.backends.postgres._reply_store import PostgresReplyStore
from nativekit.backends.postgres._saga_store import PostgresSagaStore
from nativekit.errors import BackendUnavailable


class Retention:
    """Deletes expired rows every ``interval`` seconds, ``batch`` rows per statement.

    Args:
        database: the service's :class:`Database`.
        service: service name (logs).
        interval: seconds between passes.
        batch: rows per ``DELETE``.
    """

    def __init__(self, database: Database, *, service: str, interval: float, batch: int) -> None:
        self.interval = interval
        self.batch = batch
        self.deleters = (
            PostgresSagaStore(database).delete_expired,
            PostgresDedupStore(database, namespace="").delete_expired,
            PostgresReplyStore(database, namespace="").delete_expired,
        )
        self.log = get_logger(service=service, component="postgres-retention")
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0

    async def run_once(self) -> int:
        """One pass: delete batches until a batch comes back short; returns rows deleted."""
        total = 0
        for delete in self.deleters:
            while True:
                count = await delete(self.batch)
                total += count
                if count < self.batch:
                    break
        self.deleted += total
        return total

    async def _loop(self) -> None:
        while True:
            try:
                deleted = await self.run_once()
                if deleted:
                    self.log.info("postgres.retention.deleted", rows=deleted)
            except BackendUnavailable as exc:
                self.log.warning("postgres.retention.failed", error=str(exc))
            except Exception as exc:  # a bug must not stop retention for good
                self.log.exception("postgres.retention.crashed", error=repr(exc))
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        """Start the periodic passes."""
        self._task = asyncio.create_task(self._loop(), name="postgres-retention")

    async def stop(self) -> None:
        """Stop them."""
        if self._task is not None:
            task, self._task = self._task, None
            await cancel_and_wait(task)
