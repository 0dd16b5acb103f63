"""``Transaction.after_commit`` on a real PostgreSQL: the callback runs once the rows are
visible to other connections, never after a rollback, and a failing callback leaves the
commit standing (what the shop's inventory needs to drop cached stock after a sale)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from nativekit.backends.postgres import Database, PostgresSagaStore
from nativekit.backends.postgres._transaction import PostgresTransaction
from nativekit.saga import Saga, SagaContext, SagaRuntime, SagaStatus, StepStatus

pytestmark = pytest.mark.postgres


async def _table(db: Database) -> str:
    table = f"{db.schema}.rows"
    async with db.connection("create the test table") as connection:
        await connection.execute(f"CREATE TABLE {table} (id text)")
    return table


async def _seen(db: Database, table: str) -> list[str]:
    """The rows another connection sees (committed ones only)."""
    async with db.connection("read the rows") as connection:
        return [r["id"] for r in await connection.fetch(f"SELECT id FROM {table} ORDER BY id")]


async def test_callback_runs_after_the_rows_are_committed(pg_database: Database) -> None:
    """Registered right after the insert, the callback finds the row committed."""
    table = await _table(pg_database)
    seen: list[list[str]] = []

    async def callback() -> None:
        seen.append(await _seen(pg_database, table))

    tx = PostgresTransaction(pg_database)
    try:
        await tx.execute(f"INSERT INTO {table} VALUES ('a')")
        await tx.after_commit(callback)
        assert seen == [] and await _seen(pg_database, table) == []
        await tx.commit()
    finally:
        await tx.close()
    assert seen == [["a"]]


async def test_rollback_drops_the_callback(pg_database: Database) -> None:
    """A transaction closed without commit rolls back and never calls the callback."""
    table = await _table(pg_database)
    called: list[str] = []

    async def callback() -> None:
        called.append("called")

    tx = PostgresTransaction(pg_database)
    await tx.execute(f"INSERT INTO {table} VALUES ('a')")
    await tx.after_commit(callback)
    await tx.close()
    assert called == [] and await _seen(pg_database, table) == []


async def test_a_failing_callback_leaves_the_commit_standing(pg_database: Database) -> None:
    """The callback raises: commit returns, the row stays, later callbacks still run."""
    table = await _table(pg_database)
    called: list[str] = []

    async def broken() -> None:
        raise RuntimeError("cache down")

    async def after() -> None:
        called.append("after")

    tx = PostgresTransaction(pg_database)
    try:
        await tx.execute(f"INSERT INTO {table} VALUES ('a')")
        await tx.after_commit(broken)
        await tx.after_commit(after)
        await tx.commit()
    finally:
        await tx.close()
    assert called == ["after"] and await _seen(pg_database, table) == ["a"]


async def test_a_callback_alone_begins_the_transaction(pg_database: Database) -> None:
    """Registered before any statement, the callback still runs at the commit."""
    called: list[str] = []

    async def callback() -> None:
        called.append("called")

    tx = PostgresTransaction(pg_database)
    try:
        await tx.after_commit(callback)
        assert tx.begun  # so a runner that commits only begun transactions commits it
        await tx.commit()
    finally:
        await tx.close()
    assert called == ["called"]


class Order(BaseModel):
    """Input."""

    order_id: str


async def test_a_steps_callback_runs_after_its_completion_committed(
    pg_database: Database,
) -> None:
    """A step's ctx.db commits with the run's next write; the callback sees the step's row
    and the saga past that step."""
    table = await _table(pg_database)
    seen: list[tuple[list[str], StepStatus]] = []
    saga: Saga[Order] = Saga("after-commit", input=Order)
    store = PostgresSagaStore(pg_database)

    @saga.step()
    async def write(ctx: SagaContext[Order]) -> None:
        async def callback() -> None:
            record = await store.get(ctx.saga_id)
            assert record is not None
            seen.append((await _seen(pg_database, table), record.steps["write"].status))

        await ctx.db.execute(f"INSERT INTO {table} VALUES ($1)", ctx.saga_id)
        await ctx.db.after_commit(callback)

    @saga.step()
    async def then(ctx: SagaContext[Order]) -> None:
        pass

    runtime = SagaRuntime(
        "test",
        store,
        tracing=False,
        recovery_interval=3600,
        local_wake=False,
        transactions=lambda: lambda: PostgresTransaction(pg_database),
    )
    runtime.declare(saga)
    await runtime.start(saga, {"order_id": "o"}, saga_id="s-1")
    record = await runtime.wait("s-1", 30)
    assert record.status is SagaStatus.COMPLETED, record.error
    assert seen == [(["s-1"], StepStatus.COMPLETED)]
