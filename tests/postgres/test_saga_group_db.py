"""Members of a parallel group that write in their step's transaction (``ctx.db``) on a
real PostgreSQL: each member's completion commits with its own writes, while the other
members' writes go on (one write of the run at a time, each committed before the next)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from nativekit.backends.postgres import Database, PostgresSagaStore
from nativekit.backends.postgres._transaction import PostgresTransaction
from nativekit.saga import Saga, SagaContext, SagaRuntime, SagaStatus

pytestmark = pytest.mark.postgres


class Order(BaseModel):
    """Input."""

    order_id: str


class Flaky(Exception):
    """The first attempt of one member fails after its write (which must roll back)."""


async def test_group_members_commit_their_writes_with_their_completions(
    pg_database: Database,
) -> None:
    """Three members write a row each in ctx.db at once (one fails once after writing and
    is retried); every member's row is there exactly once and the saga completes."""
    table = f"{pg_database.schema}.effects"
    async with pg_database.connection("create the effect table") as connection:
        await connection.execute(f"CREATE TABLE {table} (saga_id text, step text)")
    saga: Saga[Order] = Saga("db-group", input=Order)
    group = saga.parallel("fan")
    failed: list[str] = []

    for name in ("reserve", "charge", "ship"):

        @group.step(name=name, retries=1)
        async def member(ctx: SagaContext[Order]) -> str:
            await ctx.db.execute(f"INSERT INTO {table} VALUES ($1, $2)", ctx.saga_id, ctx.step)
            if ctx.step == "charge" and not failed:
                failed.append(ctx.step)
                raise Flaky("after the write")
            return ctx.step

    runtime = SagaRuntime(
        "test",
        PostgresSagaStore(pg_database),
        tracing=False,
        recovery_interval=3600,
        local_wake=False,
        transactions=lambda: lambda: PostgresTransaction(pg_database),
    )
    runtime.declare(saga)
    for n in range(5):
        await runtime.start(saga, {"order_id": f"o-{n}"}, saga_id=f"g-{n}")
    for n in range(5):
        record = await runtime.wait(f"g-{n}", 30)
        assert record.status is SagaStatus.COMPLETED, record.error
        assert record.results == {s: f'"{s}"' for s in ("reserve", "charge", "ship")}
    async with pg_database.connection("read the effects") as connection:
        rows = await connection.fetch(f"SELECT saga_id, step FROM {table}")
    assert sorted((r["saga_id"], r["step"]) for r in rows) == sorted(
        (f"g-{n}", s) for n in range(5) for s in ("reserve", "charge", "ship")
    )
    assert failed == ["charge"]
