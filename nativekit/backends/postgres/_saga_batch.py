"""Saga creations and transitions of one event-loop turn, each kind as one statement.

Many sagas started or moving on at nearly the same moment (a burst of requests, a
batch of messages each starting one, many concurrent runs finishing a step) would
each cost a statement and a commit of their own. Queued until the current loop turn
ends, they go out as one ``INSERT ... SELECT FROM unnest(...)`` (creations) or one
``UPDATE ... FROM unnest(...)`` (transitions): one round trip and one commit for all
of them, the way the Redis backend sends the calls of one turn as one pipeline.
Nothing waits on a timer: a lone call goes out in the same loop turn, by itself.

Each caller gets its own answer. A transition's fencing is per row (a row whose
token or status changed is not updated and its caller gets ``LeaseLost`` or
``SagaStateError``; the other rows are written). A statement commits whole or not at
all: if it fails on something one row holds (not a lost connection), each call is
sent again by itself, so no saga's bad input fails another's; a deadlock with
another replica's statement (rows locked in another order) sends it again.
Only calls outside a transaction come here: a write joining a handler's transaction,
or carrying outbox rows, is written by itself in its transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

import asyncpg

from nativekit.backends.postgres._client import NOW, Database
from nativekit.backends.postgres._saga_queries import COLUMNS, LIVE, record_of
from nativekit.saga._errors import LeaseLost, SagaStateError
from nativekit.saga._store.model import SagaRecord

__all__ = [
    "Creation",
    "TurnBatcher",
    "Write",
    "create_statement",
    "fence_statement",
    "refusal",
    "write_statement",
]

#: Most calls in one statement; more in one turn go in the next statement.
MAX_BATCH = 500
#: Errors a statement fails with because of what one of its rows holds.
ROW_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
#: Errors after which the same statement is sent again (it changed nothing).
AGAIN_ERRORS = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
AGAIN = 3

#: One creation: (id, name, definition, status, token, lease, fields as JSON, the same
#: fields as a dict: the stored record is built from them, not read back).
Creation = tuple[str, str, str, str, str, float, str, dict[str, str]]
#: One transition: (id, token, current status, changed fields as JSON, lease, retention,
#: new status, release, active, finished, release_if_any as a JSON array).
Write = tuple[str, str, str, str, float, float, str, bool, bool, bool, str]

T = TypeVar("T", bound=tuple[Any, ...])
R = TypeVar("R")
Run = Callable[[asyncpg.Connection, Sequence[T]], Awaitable[dict[Hashable, R | BaseException]]]


class TurnBatcher(Generic[T, R]):
    """Runs the calls of one event-loop turn with one statement (``run``), keyed by
    their first field (a key twice in one turn: the later call goes after the earlier).

    Args:
        database: the service's :class:`Database`.
        run: runs one batch on a connection; the answer (or error) per key.
        operation: what the statement does (in error messages).
    """

    def __init__(self, database: Database, run: Run[T, R], operation: str) -> None:
        self.db = database
        self._run = run
        self.operation = operation
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, args: T) -> R:
        """Queue ``args`` for this turn's statement; its answer or error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        batches: list[list[tuple[T, asyncio.Future[R]]]] = []
        while queue:
            batch: list[tuple[T, asyncio.Future[R]]] = []
            later: list[tuple[T, asyncio.Future[R]]] = []
            keys: set[Hashable] = set()
            for waiting in queue:
                if waiting[0][0] in keys or len(batch) >= MAX_BATCH:
                    later.append(waiting)
                else:
                    keys.add(waiting[0][0])
                    batch.append(waiting)
            batches.append(batch)
            queue = later
        task = asyncio.get_running_loop().create_task(self._send_all(batches))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_all(self, batches: list[list[tuple[T, asyncio.Future[R]]]]) -> None:
        for batch in batches:
            await self._send(batch)

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]], again: int = AGAIN) -> None:
        live = [(args, future) for args, future in batch if not future.done()]
        if not live:
            return
        try:
            pool = await self.db.pool(self.operation)
            async with pool.acquire() as connection:
                answers = await self._run(connection, [args for args, _ in live])
        except BaseException as exc:
            if isinstance(exc, AGAIN_ERRORS) and again > 0:
                await self._send(live, again - 1)
            elif isinstance(exc, ROW_ERRORS) and len(live) > 1:
                for waiting in live:  # something in one row: each alone, so only it fails
                    await self._send([waiting])
            else:
                _fail(live, self._translated(exc))
                if isinstance(exc, asyncio.CancelledError):
                    raise
            return
        for args, future in live:
            if not future.done():
                answer = answers[args[0]]
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)

    def _translated(self, exc: BaseException) -> BaseException:
        try:
            with self.db.translated(self.operation):
                raise exc
        except BaseException as translated:
            return translated

    async def aclose(self) -> None:
        """Wait for the statements in flight (their callers get their answers)."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


def _fail(batch: Sequence[tuple[Any, asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, future in batch:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)


def create_statement(table: str) -> Run[Creation, tuple[SagaRecord, bool]]:
    """Creations (see ``SagaStore.create``): the stored record, and True when this call
    created it (False: the instance already stored under that id)."""
    insert = f"""
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
        RETURNING id, since, lease_until"""
    existing = f"SELECT id, {COLUMNS} FROM {table} WHERE id = ANY($1::text[])"

    async def run(
        connection: asyncpg.Connection, creations: Sequence[Creation]
    ) -> dict[Hashable, tuple[SagaRecord, bool] | BaseException]:
        columns = zip(*(c[:7] for c in creations), strict=True)
        rows = await connection.fetch(insert, *(list(c) for c in columns))
        sent = {c[0]: c for c in creations}
        answers: dict[Hashable, tuple[SagaRecord, bool] | BaseException] = {
            row["id"]: (created(sent[row["id"]], row), True) for row in rows
        }
        others = [c[0] for c in creations if c[0] not in answers]
        found = await connection.fetch(existing, others) if others else []
        stored = {row["id"]: record_of(row) for row in found}
        for saga_id, token in ((c[0], c[4]) for c in creations if c[0] not in answers):
            record = stored.get(saga_id)
            if record is None:  # deleted by retention between the two statements
                answers[saga_id] = SagaStateError(
                    f"saga {saga_id!r} expired while being started; retry"
                )
            else:
                answers[saga_id] = (record, record.token == token)
        return answers

    return run


def created(creation: Creation, row: Any) -> SagaRecord:
    """The record a creation stored: its fields, with the server's time and the lease."""
    fields = creation[7] | {
        "status": creation[3],
        "since": repr(row["since"]),
        "token": creation[4],
        "lease": repr(row["lease_until"] * 1000),
    }
    return SagaRecord.from_fields(fields)


def write_statement(table: str) -> Run[Write, None]:
    """Transitions (see ``PostgresSagaStore.write``): fenced per row by token and status.
    The ``saga_write`` function (migration 0004) makes the same update for one saga. A
    lease with at least half its length left is kept as it is, so a transition that keeps
    the status changes no indexed column and can be a HOT update."""
    released = (
        "(c.release OR (c.release_if_any <> '[]' AND EXISTS (SELECT 1 FROM "
        "jsonb_each_text(s.fields || c.fields::jsonb) AS f WHERE f.key IN (SELECT "
        "jsonb_array_elements_text(c.release_if_any::jsonb)) AND f.value <> '')))"
    )
    update = f"""
        UPDATE {table} AS s SET
            fields = s.fields || c.fields::jsonb || jsonb_build_object('updated', ({NOW})::text),
            status = c.status,
            since = CASE WHEN s.status = c.status THEN s.since ELSE {NOW} END,
            token = CASE WHEN c.active AND NOT {released} THEN s.token END,
            lease_until = CASE WHEN NOT c.active THEN NULL WHEN {released} THEN {NOW}
                WHEN s.lease_until BETWEEN {NOW} + c.lease / 2 AND {NOW} + c.lease
                    THEN s.lease_until
                ELSE {NOW} + c.lease END,
            expires = CASE WHEN c.finished THEN {NOW} + c.retention END
        FROM (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                    $5::float8[], $6::float8[], $7::text[], $8::bool[], $9::bool[],
                    $10::bool[], $11::text[])
                AS u(id, token, current, fields, lease, retention, status, release, active,
                     finished, release_if_any)
              ORDER BY u.id) AS c
        WHERE s.id = c.id AND s.token = c.token AND s.status = c.current
          AND (s.expires IS NULL OR s.expires > {NOW})
        RETURNING s.id"""
    fence = fence_statement(table)

    async def run(
        connection: asyncpg.Connection, writes: Sequence[Write]
    ) -> dict[Hashable, BaseException | None]:
        rows = await connection.fetch(update, *(list(c) for c in zip(*writes, strict=True)))
        answers: dict[Hashable, BaseException | None] = {row["id"]: None for row in rows}
        refused = [w for w in writes if w[0] not in answers]
        if refused:
            found = await connection.fetch(fence, [w[0] for w in refused])
            stored = {row["id"]: row for row in found}
            for saga_id, token, current, *_ in refused:
                answers[saga_id] = refusal(stored.get(saga_id), saga_id, token, current)
        return answers

    return run


def fence_statement(table: str) -> str:
    """The token and status of the sagas ``$1`` (a refused write's cause)."""
    return f"SELECT id, token, status FROM {table} WHERE id = ANY($1::text[]) AND {LIVE}"


def refusal(row: Any, saga_id: str, token: str, current: str) -> Exception:
    """Why a write of ``token`` from status ``current`` was refused, from the saga's
    ``fence_statement`` row (None: the saga is gone)."""
    if row is not None and row["token"] == token and row["status"] != current:
        return SagaStateError(f"saga {saga_id!r} is no longer {current}")
    return LeaseLost(f"saga {saga_id!r}: lease token {token[:8]}… is no longer current")
