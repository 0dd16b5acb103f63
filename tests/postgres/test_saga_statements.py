"""What a saga costs on PostgreSQL, statement by statement, and what the fewer statements
keep: a step's completion and the next step's start are one write, committed with the
rows the step wrote through ``ctx.db`` (or rolled back with them)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel

from nativekit.backends.postgres import Database, PostgresSagaStore, upgrade
from nativekit.backends.postgres._transaction import PostgresTransaction
from nativekit.saga import Saga, SagaContext, SagaRuntime, SagaStatus, StepStatus
from nativekit.settings import Settings

pytestmark = pytest.mark.postgres

STEPS = ("reserve", "charge", "ship")


class Order(BaseModel):
    """Input."""

    order_id: str


class Statements:
    """What the pool's connections ran, in order: ``(verb, table)`` per statement, and the
    number of messages sent (round trips: a message without parameters may hold several
    statements; the data of these tests has no semicolons)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.messages = 0
        self.reset = ""

    async def attach(self, connection: asyncpg.Connection) -> None:
        """The pool's ``init``: log every statement of ``connection``."""
        self.reset = connection.get_reset_query().strip().rstrip(";")
        connection.add_query_logger(self.log)

    def log(self, record: Any) -> None:
        if "typeinfo_tree" in record.query or "set_config('jit'" in record.query:
            return  # asyncpg's look-up of array types, once per connection
        self.messages += 1
        query = record.query
        if not record.args:  # asyncpg's session reset, logged as one statement
            query = query.replace(self.reset, "RESET")
        for statement in query.split(";") if not record.args else [query]:
            words = statement.split()
            if not words:
                continue
            if words == ["RESET"]:
                self.seen.append(("RESET", ""))
                continue
            verb = words[0].upper()
            table = next((w.rpartition(".")[2].partition("(")[0] for w in words if "." in w), "")
            self.seen.append((verb, table))


@pytest.fixture
async def counted(
    postgres_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Database, Statements]]:
    """A migrated schema of the test's own, on a pool whose statements are logged."""
    statements = Statements()
    create_pool = asyncpg.create_pool
    monkeypatch.setattr(
        asyncpg, "create_pool", lambda *a, **k: create_pool(*a, init=statements.attach, **k)
    )
    database = Database(
        Settings(database={"url": postgres_url, "schema_name": f"t_{unique}", "pool_size": 5})
    )
    await upgrade(database)
    async with database.connection("create the effects table") as connection:
        await connection.execute(f"CREATE TABLE {database.table('effects')} (key text)")
    yield database, statements
    async with database.connection("drop the test schema") as connection:
        await connection.execute(f"DROP SCHEMA {database.schema} CASCADE")
    await database.aclose()


def runtime_for(database: Database, saga: Saga[Order]) -> SagaRuntime:
    """A runtime on PostgreSQL whose steps get ``ctx.db``, with no background recovery."""
    runtime = SagaRuntime(
        "test",
        PostgresSagaStore(database),
        tracing=False,
        recovery_interval=3600,
        transactions=lambda: lambda: PostgresTransaction(database),
    )
    runtime.declare(saga)
    return runtime


def effect_saga(database: Database, during: Any = None) -> Saga[Order]:
    """Three steps that each insert one row through ``ctx.db`` (then await ``during``)."""
    saga: Saga[Order] = Saga("effects", input=Order)

    async def effect(ctx: SagaContext[Order]) -> None:
        await ctx.db.execute(
            f"INSERT INTO {database.table('effects')} (key) VALUES ($1)", ctx.idempotency_key
        )
        if during is not None:
            await during(ctx)

    async def undo(ctx: SagaContext[Order]) -> None:
        return None

    for name in STEPS:
        saga.step(name=name)(effect).compensate(undo)
    return saga


async def test_a_three_step_saga_commits_once_per_step_plus_its_creation(
    counted: tuple[Database, Statements],
) -> None:
    """Creation (with the first step's start) is one statement; each step is its transaction:
    BEGIN, its insert, then one message holding the saga write (its completion with the next
    step's start, or with the saga's end), COMMIT and the session reset of a connection lent
    to step code: three round trips per step."""
    database, statements = counted
    runtime = runtime_for(database, effect_saga(database))
    statements.seen.clear()
    statements.messages = 0
    await runtime.start("effects", {"order_id": "o-1"}, saga_id="s-1")
    record = await runtime.wait("s-1", 10)
    assert record.status is SagaStatus.COMPLETED
    step = [("BEGIN", ""), ("INSERT", "effects"), ("SELECT", "saga_write"), ("COMMIT", ""),
            ("RESET", "")]  # fmt: skip
    assert statements.seen == [("INSERT", "saga"), *step, *step, *step]
    assert statements.messages == 1 + 3 * 3


async def test_later_sagas_begin_each_steps_transaction_with_the_write_before_it(
    counted: tuple[Database, Statements],
) -> None:
    """Once the runtime saw the steps use ``ctx.db``, the message that commits a step's
    completion with the next step's start also resets the session and begins the next
    step's transaction on the same connection: BEGIN once, then two round trips per step."""
    database, statements = counted
    runtime = runtime_for(database, effect_saga(database))
    await runtime.start("effects", {"order_id": "o-1"}, saga_id="s-1")
    assert (await runtime.wait("s-1", 10)).status is SagaStatus.COMPLETED
    statements.seen.clear()
    statements.messages = 0
    await runtime.start("effects", {"order_id": "o-2"}, saga_id="s-2")
    assert (await runtime.wait("s-2", 10)).status is SagaStatus.COMPLETED
    step = [("INSERT", "effects"), ("SELECT", "saga_write"), ("COMMIT", ""), ("RESET", "")]
    assert statements.seen == [("INSERT", "saga"), ("BEGIN", ""), *step, ("BEGIN", ""), *step,
                               ("BEGIN", ""), *step]  # fmt: skip
    assert statements.messages == 1 + 1 + 3 * 2
    async with database.connection("read the effects") as connection:
        count = await connection.fetchval(f"SELECT count(*) FROM {database.table('effects')}")
    assert count == 6


async def test_session_settings_of_a_step_do_not_reach_the_next_step(
    counted: tuple[Database, Statements],
) -> None:
    """A ``SET`` made by one step is reset before the next step of the same saga runs, also
    when that step's transaction was begun with the write before it."""
    database, _ = counted
    seen: list[str] = []
    saga: Saga[Order] = Saga("settings", input=Order)

    @saga.step(name="set")
    async def set_name(ctx: SagaContext[Order]) -> None:
        await ctx.db.execute("SET application_name = 'step-one'")

    @saga.step(name="read")
    async def read_name(ctx: SagaContext[Order]) -> None:
        seen.append(await ctx.db.fetchval("SELECT current_setting('application_name')"))

    runtime = runtime_for(database, saga)
    for n in range(2):
        await runtime.start("settings", {"order_id": "o"}, saga_id=f"s-{n}")
        assert (await runtime.wait(f"s-{n}", 10)).status is SagaStatus.COMPLETED
    assert len(seen) == 2 and "step-one" not in seen


async def test_a_transaction_begun_in_advance_serves_the_raw_connection_or_rolls_back(
    counted: tuple[Database, Statements],
) -> None:
    """The transaction ``chain`` begins: a handler asking for the raw connection still gets
    asyncpg's own transaction (``connection.transaction()`` nests as a savepoint), and one
    no handler used rolls back and gives its connection back."""
    database, _ = counted
    insert = f"INSERT INTO {database.table('effects')} (key) VALUES ($1)"
    first = PostgresTransaction(database)
    await first.execute(insert, "first")
    first.chain()
    await first.end_with("SELECT 1")
    await first.commit()
    raw = first.following()
    assert raw is not None and not raw.begun
    connection = await raw.connection()
    with pytest.raises(RuntimeError):
        async with connection.transaction():
            await connection.execute(insert, "undone")
            raise RuntimeError("inner block fails")
    await connection.execute(insert, "raw")
    assert raw.statements_only is False
    await raw.commit()
    unused = PostgresTransaction(database)
    await unused.execute(insert, "third")
    unused.chain()
    await unused.end_with("SELECT 1")
    follower = unused.following()
    assert follower is not None
    await follower.close()
    pool = await database.pool()
    async with database.connection("read the effects") as connection:
        rows = await connection.fetch(f"SELECT key FROM {database.table('effects')}")
    assert sorted(row["key"] for row in rows) == ["first", "raw", "third"]
    assert pool.get_idle_size() == pool.get_size()


async def test_a_write_refused_after_a_step_rolls_back_the_steps_rows(
    counted: tuple[Database, Statements],
) -> None:
    """Another runner takes the lease while step 2 runs: the write of step 2's completion is
    refused, and step 2's row rolls back with it (step 1's row, committed with step 2's
    start, stays); the stored record still shows step 2 running."""
    database, _ = counted
    store = PostgresSagaStore(database)

    async def stolen(ctx: SagaContext[Order]) -> None:
        if ctx.step == "charge":
            await store.claim(ctx.saga_id, "another-runner", lease=60, force=True)

    runtime = runtime_for(database, effect_saga(database, stolen))
    await runtime.start("effects", {"order_id": "o-1"}, saga_id="s-1")
    while "s-1" in runtime.runs:  # the run ends when its write is refused
        await runtime.runs["s-1"][1]
    record = await store.get("s-1")
    assert record is not None and record.token == "another-runner"
    assert record.steps["reserve"].status is StepStatus.COMPLETED
    assert record.steps["charge"].status is StepStatus.RUNNING
    async with database.connection("read the effects") as connection:
        rows = await connection.fetch(f"SELECT key FROM {database.table('effects')}")
    assert [row["key"] for row in rows] == ["s-1:reserve:forward"]


async def test_ctx_db_rows_of_steps_alone_groups_and_compensations_each_commit_once(
    counted: tuple[Database, Statements],
) -> None:
    """A step alone, then a parallel group, then a refusing step, all writing through
    ``ctx.db``: the step alone's transaction commits with the group's first write, and
    every forward and compensating row exists once when the saga is COMPENSATED."""
    database, _ = counted
    saga: Saga[Order] = Saga("mixed", input=Order)
    insert = f"INSERT INTO {database.table('effects')} (key) VALUES ($1)"

    async def effect(ctx: SagaContext[Order]) -> None:
        await ctx.db.execute(insert, ctx.idempotency_key)

    async def refuse(ctx: SagaContext[Order]) -> None:
        await ctx.db.execute(insert, ctx.idempotency_key)  # rolled back with the failure
        raise PermissionError("refused")

    saga.step(name="reserve")(effect).compensate(effect)
    group = saga.parallel("fan")
    for name in ("left", "right"):
        group.step(name=name)(effect).compensate(effect)
    saga.step(name="charge", no_retry=(PermissionError,))(refuse).compensate(effect)
    runtime = runtime_for(database, saga)
    await runtime.start("mixed", {"order_id": "o-1"}, saga_id="s-1")
    record = await runtime.wait("s-1", 10)
    assert record.status is SagaStatus.COMPENSATED, record.error
    async with database.connection("read the effects") as connection:
        rows = await connection.fetch(f"SELECT key FROM {database.table('effects')}")
    keys = sorted(row["key"] for row in rows)
    expected = [f"s-1:{step}:{direction}" for step in ("left", "reserve", "right")
                for direction in ("compensate", "forward")]  # fmt: skip
    assert keys == sorted(expected)


async def test_session_settings_made_by_handler_code_do_not_reach_the_next_user(
    postgres_url: str, unique: str
) -> None:
    """A session ``SET`` committed through a lent connection (``Database.transaction``, a
    handler's transaction) is reset before the pool hands the connection to anyone else;
    the stores' own statements skip that reset and change nothing."""
    database = Database(
        Settings(database={"url": postgres_url, "schema_name": f"t_{unique}", "pool_size": 1})
    )
    show = "SELECT current_setting('application_name')"
    try:
        async with database.connection("read the setting") as connection:
            default = await connection.fetchval(show)
        async with database.transaction() as connection:
            await connection.execute("SET application_name = 'lent-1'")
        async with database.connection("read the setting") as connection:
            assert await connection.fetchval(show) == default
        transaction = PostgresTransaction(database)
        await transaction.execute("SET application_name = 'lent-2'")
        assert await transaction.fetchval(show) == "lent-2"
        await transaction.commit()
        async with database.connection("read the setting") as connection:
            assert await connection.fetchval(show) == default
    finally:
        await database.aclose()


async def test_results_with_quotes_and_backslashes_survive_the_literal_write(
    counted: tuple[Database, Statements],
) -> None:
    """The write that ends a step's transaction is sent as literals (no parameters):
    results holding quotes, backslashes, semicolons, dollar quotes and non-ASCII text come
    back exactly, as do a saga id and an input of the same kind."""
    database, _ = counted
    tricky = "it's \\ a ' \\' ; $$ $fn$ E'x' \\x00 é 😀 \n\t"
    saga: Saga[Order] = Saga("quotes", input=Order)

    @saga.step(name="echo")
    async def echo(ctx: SagaContext[Order]) -> dict[str, str]:
        await ctx.db.execute(f"INSERT INTO {database.table('effects')} (key) VALUES ($1)", tricky)
        return {"text": tricky, "order": ctx.data.order_id}

    runtime = runtime_for(database, saga)
    saga_id = f"s-{tricky}"
    await runtime.start("quotes", {"order_id": tricky}, saga_id=saga_id)
    record = await runtime.wait(saga_id, 10)
    assert record.status is SagaStatus.COMPLETED, record.error
    assert json.loads(record.results["echo"]) == {"text": tricky, "order": tricky}
    stored = await PostgresSagaStore(database).get(saga_id)
    assert stored is not None and stored.results == record.results
    async with database.connection("read the effects") as connection:
        assert await connection.fetchval(f"SELECT key FROM {database.table('effects')}") == tricky


async def test_savepoints_in_a_transaction_begun_by_connection_or_by_a_statement(
    counted: tuple[Database, Statements],
) -> None:
    """Begun by ``connection()``, asyncpg's ``connection.transaction()`` nests as a
    savepoint (an inner block that raises rolls back alone); begun by a statement, the
    transaction takes ``SAVEPOINT`` statements. Both commit what was kept, and hand the
    connection back with its session reset."""
    database, _ = counted
    insert = f"INSERT INTO {database.table('effects')} (key) VALUES ($1)"
    raw = PostgresTransaction(database)
    connection = await raw.connection()
    async with connection.transaction():
        await connection.execute(insert, "kept")
    with pytest.raises(RuntimeError):
        async with connection.transaction():
            await connection.execute(insert, "undone")
            raise RuntimeError("inner block fails")
    await connection.execute("SET application_name = 'raw'")
    await raw.commit()
    plain = PostgresTransaction(database)
    await plain.execute(insert, "also-kept")
    await plain.execute("SAVEPOINT s")
    await plain.execute(insert, "undone-too")
    await plain.execute("ROLLBACK TO SAVEPOINT s")
    await plain.execute("SET application_name = 'plain'")
    await plain.commit()
    async with database.connection("read the effects") as connection:
        rows = await connection.fetch(f"SELECT key FROM {database.table('effects')}")
        name = await connection.fetchval("SELECT current_setting('application_name')")
    assert sorted(row["key"] for row in rows) == ["also-kept", "kept"]
    assert name not in ("raw", "plain")
