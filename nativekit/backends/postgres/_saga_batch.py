"""``CreateBatcher``: the saga creations of one event-loop turn, as one statement.

Many sagas started at nearly the same moment (a burst of requests, a batch of
messages each starting one) would each cost a statement and a commit of their own.
Queued until the current loop turn ends, they go out as one ``INSERT ... SELECT FROM
unnest(...)``: one round trip and one commit for all of them, the way the Redis
backend sends the calls of one turn as one pipeline. Each caller still gets its own
answer: created, or the instance already stored under its id. Nothing waits on a
timer: a lone creation goes out in the same loop turn, by itself.

A statement is atomic, so a batch commits whole or not at all; if it fails on
something one row holds (not a lost connection), each creation is sent again by
itself, so no saga's bad input fails another's start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from nativekit.backends.postgres._client import NOW, Database
from nativekit.backends.postgres._saga_queries import COLUMNS, record_of
from nativekit.saga._errors import SagaStateError
from nativekit.saga._store.model import SagaRecord

__all__ = ["CreateBatcher", "Creation"]

#: Most creations in one statement; more in one turn go in the next statement.
MAX_BATCH = 500

#: Errors a statement fails with because of what one of its rows holds.
ROW_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)

#: One creation: (id, name, definition, status, token, lease, fields as JSON).
Creation = tuple[str, str, str, str, str, float, str]
_Waiting = tuple[Creation, "asyncio.Future[tuple[SagaRecord, bool]]"]


class CreateBatcher:
    """Creates saga rows of one event-loop turn with one statement.

    Args:
        database: the service's :class:`Database`.
        table: the qualified saga table.
    """

    def __init__(self, database: Database, table: str) -> None:
        self.db = database
        self._queue: list[_Waiting] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self._insert = f"""
            INSERT INTO {table} AS s
                (id, name, definition, status, since, token, lease_until, expires, fields)
            SELECT c.id, c.name, c.definition, c.status, {NOW}, c.token, {NOW} + c.lease,
                NULL, c.fields::jsonb
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                        $6::float8[], $7::text[])
                AS c(id, name, definition, status, token, lease, fields)
            ORDER BY c.id
            ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                definition = excluded.definition, status = excluded.status,
                since = excluded.since, token = excluded.token,
                lease_until = excluded.lease_until, expires = NULL, fields = excluded.fields
            WHERE s.expires IS NOT NULL AND s.expires <= {NOW}
            RETURNING id, {COLUMNS}"""
        self._existing = f"SELECT id, {COLUMNS} FROM {table} WHERE id = ANY($1::text[])"

    async def create(self, creation: Creation) -> tuple[SagaRecord, bool]:
        """Store the new instance (see ``SagaStore.create``): the stored record, and
        True when this call created it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[SagaRecord, bool]] = loop.create_future()
        self._queue.append((creation, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        batches: list[list[_Waiting]] = []
        while queue:  # an id twice in one turn: the later one goes after the earlier
            batch: list[_Waiting] = []
            later: list[_Waiting] = []
            ids: set[str] = set()
            for waiting in queue:
                if waiting[0][0] in ids or len(batch) >= MAX_BATCH:
                    later.append(waiting)
                else:
                    ids.add(waiting[0][0])
                    batch.append(waiting)
            batches.append(batch)
            queue = later
        task = asyncio.get_running_loop().create_task(self._send_all(batches))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_all(self, batches: list[list[_Waiting]]) -> None:
        for batch in batches:
            await self._send(batch)

    async def _send(self, batch: list[_Waiting]) -> None:
        live = [(c, f) for c, f in batch if not f.done()]
        if not live:
            return
        try:
            answers = await self._run([c for c, _ in live])
        except BaseException as exc:
            if isinstance(exc, ROW_ERRORS) and len(live) > 1:
                for waiting in live:  # something in one row: each alone, so only it fails
                    await self._send([waiting])
                return
            _fail(live, self._translated(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for creation, future in live:
            if not future.done():
                answer = answers[creation[0]]
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    async def _run(
        self, creations: Sequence[Creation]
    ) -> dict[str, tuple[SagaRecord, bool] | BaseException]:
        columns = list(zip(*creations, strict=True))
        pool = await self.db.pool("create sagas")
        async with pool.acquire() as connection:
            rows = await connection.fetch(self._insert, *(list(c) for c in columns))
            answers: dict[str, tuple[SagaRecord, bool] | BaseException] = {
                row["id"]: (record_of(row), True) for row in rows
            }
            others = [c[0] for c in creations if c[0] not in answers]
            found = await connection.fetch(self._existing, others) if others else []
        stored = {row["id"]: record_of(row) for row in found}
        for creation in creations:
            saga_id, token = creation[0], creation[4]
            if saga_id in answers:
                continue
            record = stored.get(saga_id)
            if record is None:  # deleted by retention between the two statements
                answers[saga_id] = SagaStateError(
                    f"saga {saga_id!r} expired while being started; retry"
                )
            else:
                answers[saga_id] = (record, record.token == token)
        return answers

    def _translated(self, exc: BaseException) -> BaseException:
        try:
            with self.db.translated("create a saga"):
                raise exc
        except BaseException as translated:
            return translated
        return exc  # pragma: no cover - translated() always raises

    async def aclose(self) -> None:
        """Wait for the statements in flight (their callers get their answers)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


def _fail(batch: Sequence[_Waiting], exc: BaseException) -> None:
    for _, future in batch:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
