"""`nativekit sagas` against real Redis and real PostgreSQL, with a service that registers
the sagas running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel

import nativekit
from nativekit.backends.postgres import Database, PostgresSagaStore, upgrade
from nativekit.backends.redis._saga_store import RedisSagaStore
from nativekit.saga import Backoff, SagaContext, SagaStatus, StepStatus
from nativekit.saga._store.store import SagaStore
from nativekit.testing import serve
from tests.cli.conftest import Cli

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

FAST = Backoff(initial=0.01, maximum=0.02)


class Order(BaseModel):
    """Saga input."""

    order_id: str


@dataclass
class Knobs:
    """What the test steps do, per saga id."""

    broken: set[str] = field(default_factory=set)  # step names that raise
    held: dict[str, asyncio.Event] = field(default_factory=dict)  # step name -> gate
    entered: dict[str, asyncio.Event] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def step(self, name: str) -> None:
        self.calls.append(name)
        self.entered.setdefault(name, asyncio.Event()).set()
        gate = self.held.get(name)
        if gate is not None:
            await gate.wait()
        if name in self.broken:
            raise ConnectionError(f"{name} is down")


def define(svc: nativekit.Service, knobs: Knobs) -> None:
    """'ship': reserve, notify (pivot), send; 'undo': reserve, charge; 'slow': hold, after."""
    ship = svc.saga("ship", input=Order)

    @ship.step()
    async def reserve(ctx: SagaContext[Order]) -> dict[str, str]:
        await knobs.step("reserve")
        return {"reservation": f"r-{ctx.data.order_id}"}

    @reserve.compensate(retries=0)
    async def release(ctx: SagaContext[Order]) -> None:
        await knobs.step("release")

    @ship.step()
    async def notify(ctx: SagaContext[Order]) -> None:
        await knobs.step("notify")

    @ship.step(retries=0, backoff=FAST)
    async def send(ctx: SagaContext[Order]) -> None:
        await knobs.step("send")

    undo = svc.saga("undo", input=Order)

    @undo.step()
    async def hold_stock(ctx: SagaContext[Order]) -> None:
        await knobs.step("hold_stock")

    @hold_stock.compensate(retries=0)
    async def free_stock(ctx: SagaContext[Order]) -> None:
        await knobs.step("free_stock")

    @undo.step(retries=0)
    async def charge(ctx: SagaContext[Order]) -> None:
        raise PermissionError("card declined")

    @charge.compensate
    async def refund(ctx: SagaContext[Order]) -> None:
        return None

    slow = svc.saga("slow", input=Order)

    @slow.step()
    async def wait_here(ctx: SagaContext[Order]) -> None:
        await knobs.step("wait_here")

    @wait_here.compensate
    async def undo_wait(ctx: SagaContext[Order]) -> None:
        await knobs.step("undo_wait")

    @slow.step()
    async def after(ctx: SagaContext[Order]) -> None:
        await knobs.step("after")


@dataclass
class World:
    """A service on real Redis registering the sagas, and the command pointed at it."""

    svc: nativekit.Service
    knobs: Knobs
    cli: Cli
    store: SagaStore

    def replica(self) -> nativekit.Service:
        """Another replica of the service (same settings and sagas)."""
        svc = nativekit.Service("orders", settings=self.svc.settings)
        define(svc, self.knobs)
        return svc

    async def start(self, saga: str, saga_id: str) -> None:
        await self.svc.sagas.start(saga, {"order_id": saga_id}, saga_id=saga_id)

    async def status(self, saga_id: str) -> SagaStatus:
        record = await self.store.get(saga_id)
        assert record is not None
        return record.status


@pytest.fixture(params=["redis"])
async def world(
    request: pytest.FixtureRequest, redis_url: str, postgres_url: str, unique: str, cli: Cli
) -> AsyncIterator[World]:
    """The service (not started) and the command, sharing a unique saga key prefix (Redis)
    or schema (PostgreSQL: tests that list it in their parameters)."""
    prefix = f"test:cli:{unique}"
    database: dict[str, Any] = {}
    if request.param == "postgres":
        database = {"url": postgres_url, "schema_name": f"cli_{unique}", "migrate_on_start": True}
        cli.env.update(
            NATIVEKIT_DATABASE_URL=postgres_url, NATIVEKIT_DATABASE_SCHEMA_NAME=f"cli_{unique}"
        )
    settings = nativekit.Settings(
        redis={"url": redis_url},
        database=database,
        saga={"key_prefix": prefix, "shards": 4, "recovery_interval_seconds": 0.1},
        telemetry={"log_level": "CRITICAL", "tracing_enabled": False},
    )
    svc = nativekit.Service("orders", settings=settings)
    knobs = Knobs()
    define(svc, knobs)
    cli.env.update(
        NATIVEKIT_REDIS_URL=redis_url,
        NATIVEKIT_SAGA_KEY_PREFIX=prefix,
        NATIVEKIT_SAGA_SHARDS="4",
    )
    client = aioredis.Redis.from_url(redis_url)
    pg: Database | None = None
    store: SagaStore
    if request.param == "postgres":
        pg = Database(settings)
        await upgrade(pg)
        store = PostgresSagaStore(pg)
    else:
        store = RedisSagaStore(client, prefix=prefix, shards=4)
    yield World(svc, knobs, cli, store)
    if pg is not None:
        async with pg.connection("drop the test schema") as connection:
            await connection.execute(f"DROP SCHEMA {pg.schema} CASCADE")
        await pg.aclose()
    keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def in_each_state(world: World) -> None:
    """done COMPLETED, failed FAILED (after the pivot), undone COMPENSATED, stuck FAILED
    (its compensation broke), running RUNNING (held in wait_here)."""
    knobs, sagas = world.knobs, world.svc.sagas
    for saga, saga_id, broken in [
        ("ship", "done", set()),
        ("ship", "failed", {"send"}),
        ("undo", "undone", set()),
        ("undo", "stuck", {"free_stock"}),
    ]:
        knobs.broken = broken
        await world.start(saga, saga_id)
        await sagas.wait(saga_id, 10)
    knobs.held["wait_here"] = asyncio.Event()
    await world.start("slow", "running")
    await knobs.entered.setdefault("wait_here", asyncio.Event()).wait()


def rows(table: str) -> dict[str, list[str]]:
    """Table lines by their first cell."""
    return {line.split()[0]: line.split() for line in table.splitlines()[1:]}


@pytest.mark.parametrize("world", ["redis", "postgres"], indirect=True)
async def test_list_shows_sagas_in_each_state_and_filters(world: World) -> None:
    """list prints one row per saga with its status; --status, --name, --older-than filter."""
    async with serve(world.svc):
        await in_each_state(world)
        everything = await world.cli("sagas", "list")
        failed = await world.cli("sagas", "list", "--status", "failed", "--json")
        slow = await world.cli("sagas", "list", "--name", "slow")
        old = await world.cli("sagas", "list", "--older-than", "1h")
        world.knobs.held["wait_here"].set()
    assert everything.code == 0, everything.err
    header = everything.out.splitlines()[0].split()
    assert header == ["SAGA", "ID", "NAME", "STATUS", "FOR", "STEP", "ERROR"]
    table = rows(everything.out)
    assert {k: v[2] for k, v in table.items()} == {
        "done": "COMPLETED",
        "failed": "FAILED",
        "undone": "COMPENSATED",
        "stuck": "FAILED",
        "running": "RUNNING",
    }
    assert table["failed"][4] == "send" and table["running"][4] == "wait_here"
    assert "step 'send' failed after pivot step 'notify'" in everything.out
    assert failed.code == 0
    assert sorted(i["saga_id"] for i in failed.json()["items"]) == ["failed", "stuck"]
    assert list(rows(slow.out)) == ["running"]
    assert old.code == 0 and old.out == "" and "No saga matches" in old.err


@pytest.mark.parametrize("world", ["redis", "postgres"], indirect=True)
async def test_list_pages_with_a_cursor(world: World) -> None:
    """--limit pages; the hint's cursor continues where the page ended."""
    async with serve(world.svc):
        for n in range(3):
            await world.start("ship", f"p{n}")
        for n in range(3):
            await world.svc.sagas.wait(f"p{n}", 10)
        first = await world.cli("sagas", "list", "--limit", "2", "--json")
        hinted = await world.cli("sagas", "list", "--limit", "2")
        rest = await world.cli("sagas", "list", "--limit", "2", "--cursor", first.json()["cursor"])
    assert len(first.json()["items"]) == 2
    assert f"--cursor '{first.json()['cursor']}'" in hinted.err
    ids = [i["saga_id"] for i in first.json()["items"]] + list(rows(rest.out))
    assert sorted(ids) == ["p0", "p1", "p2"] and "--cursor" not in rest.err


@pytest.mark.parametrize("world", ["redis", "postgres"], indirect=True)
async def test_show_prints_the_step_history(world: World) -> None:
    """show prints status, error and each step's status and attempts; --json the record."""
    async with serve(world.svc):
        world.knobs.broken.add("free_stock")
        await world.start("undo", "stuck")
        await world.svc.sagas.wait("stuck", 10)
        shown = await world.cli("sagas", "show", "stuck")
        as_json = await world.cli("sagas", "show", "stuck", "--json")
    assert shown.code == 0, shown.err
    assert "Status:      FAILED for " in shown.out
    assert "compensation of step 'hold_stock' exhausted its policy" in shown.out
    steps = rows(shown.out.split("\n\n")[1])
    assert steps["hold_stock"][1:4] == ["compensation_failed", "1", "1"]
    assert steps["charge"][1:3] == ["failed", "1"]
    assert "free_stock is down" in shown.out and "card declined" in shown.out
    record = as_json.json()
    assert record["status"] == "FAILED" and record["input"] == {"order_id": "stuck"}
    assert record["steps"]["hold_stock"]["status"] == "compensation_failed"


@pytest.mark.parametrize("world", ["redis", "postgres"], indirect=True)
async def test_retry_sends_a_failed_saga_forward_on_the_replica_with_its_code(
    world: World,
) -> None:
    """retry --wait: the service's recovery resumes the failed step, which now succeeds."""
    async with serve(world.svc):
        world.knobs.broken.add("send")
        await world.start("ship", "failed")
        assert (await world.svc.sagas.wait("failed", 10)).status is SagaStatus.FAILED
        world.knobs.broken.clear()
        world.knobs.calls.clear()
        done = await world.cli("sagas", "retry", "failed", "--wait", "20s")
    assert done.code == 0, done.err
    assert "Saga failed (ship): FAILED -> RUNNING." in done.out and "Now COMPLETED." in done.out
    assert world.knobs.calls == ["send"]  # completed steps did not run again
    record = await world.store.get("failed")
    assert record is not None and record.steps["send"].attempts == 1 and record.error is None


@pytest.mark.parametrize("world", ["redis", "postgres"], indirect=True)
async def test_compensate_stops_a_running_saga_and_undoes_its_step(world: World) -> None:
    """compensate on a RUNNING saga fences its runner; recovery compensates the caught step."""
    async with serve(world.svc):
        world.knobs.held["wait_here"] = asyncio.Event()
        await world.start("slow", "running")
        await world.knobs.entered.setdefault("wait_here", asyncio.Event()).wait()
        done = await world.cli("sagas", "compensate", "running", "--wait", "20s", "--json")
        world.knobs.held["wait_here"].set()
    assert done.code == 0, done.err
    record = done.json()
    assert record["previous_status"] == "RUNNING" and record["status"] == "COMPENSATED"
    assert record["steps"]["wait_here"]["status"] == "compensated"
    assert "undo_wait" in world.knobs.calls and "after" not in world.knobs.calls


async def test_compensate_finishes_a_saga_whose_compensation_was_fixed(world: World) -> None:
    """A FAILED saga whose compensation gave up is compensated once the cause is fixed."""
    async with serve(world.svc):
        world.knobs.broken.add("free_stock")
        await world.start("undo", "stuck")
        await world.svc.sagas.wait("stuck", 10)
        refused = await world.cli("sagas", "retry", "stuck")
        world.knobs.broken.clear()
        done = await world.cli("sagas", "compensate", "stuck", "--wait", "20s")
    assert refused.code == 1 and "already ran compensations" in refused.err
    assert done.code == 0, done.err
    assert "FAILED -> COMPENSATING" in done.out and "Now COMPENSATED.\n" in done.out
    assert "Reason: compensation of step 'hold_stock' exhausted" in done.out  # why it undid


@pytest.mark.parametrize("world", ["redis", "postgres"], indirect=True)
async def test_abort_stops_a_running_saga_where_it_is(world: World) -> None:
    """abort writes ABORTED with the reason; the runner is fenced and no later step runs."""
    async with serve(world.svc):
        world.knobs.held["wait_here"] = asyncio.Event()
        await world.start("slow", "running")
        await world.knobs.entered.setdefault("wait_here", asyncio.Event()).wait()
        done = await world.cli("sagas", "abort", "running", "--reason", "customer left")
        world.knobs.held["wait_here"].set()
        await asyncio.sleep(0.5)  # several recovery passes
        again = await world.cli("sagas", "abort", "running")
    assert done.code == 0, done.err
    assert done.out.startswith("Saga running (slow): RUNNING -> ABORTED.")
    record = await world.store.get("running")
    assert record is not None and record.status is SagaStatus.ABORTED
    assert record.error == "customer left"
    assert record.steps["wait_here"].status is StepStatus.RUNNING
    assert "after" not in world.knobs.calls
    assert again.code == 1 and "is ABORTED; this action needs one of RUNNING" in again.err


async def test_retry_without_a_replica_waits_for_one(world: World) -> None:
    """Retry from the command alone leaves the saga RUNNING and released, without the
    expiry its abort set; --wait says no replica took it; a replica started later does."""
    async with serve(world.svc):
        world.knobs.held["wait_here"] = asyncio.Event()
        await world.start("slow", "aborted")
        await world.knobs.entered.setdefault("wait_here", asyncio.Event()).wait()
        assert (await world.cli("sagas", "abort", "aborted")).code == 0
        world.knobs.held["wait_here"].set()
    key = world.store._record_key("aborted")
    assert await world.store.client.pttl(key) > 0
    waited = await world.cli("sagas", "retry", "aborted", "--wait", "1s")
    assert waited.code == 1
    assert "is still RUNNING after 1s; is a replica that registers saga 'slow'" in waited.err
    assert await world.store.client.pttl(key) == -1  # no expiry while it runs again
    assert await world.store.backlog() == 1
    replica = world.replica()
    async with serve(replica):
        record = await replica.sagas.wait("aborted", 10)
    assert record.status is SagaStatus.COMPLETED


async def test_errors_have_meaningful_exit_codes(world: World, cli: Cli) -> None:
    """Unknown id or wrong status 1, missing service or memory:// 2, unreachable Redis 3."""
    async with serve(world.svc):
        await world.start("ship", "done")
        await world.svc.sagas.wait("done", 10)
        completed = await world.cli("sagas", "retry", "done")
    missing = await world.cli("sagas", "show", "nope")
    no_service = await world.cli("sagas", "list", NATIVEKIT_SAGA_KEY_PREFIX="")
    memory = await cli("sagas", "list", "-s", "orders", NATIVEKIT_REDIS_URL="memory://")
    down = await world.cli(
        "sagas",
        "list",
        NATIVEKIT_REDIS_URL="redis://127.0.0.1:1/0",
        NATIVEKIT_CONNECT_TIMEOUT_SECONDS="1",
    )
    bad_duration = await world.cli("sagas", "list", "--older-than", "soon")
    assert completed.code == 1
    assert "saga 'done' is COMPLETED; this action needs one of FAILED, ABORTED" in completed.err
    assert missing.code == 1 and "no saga instance with id 'nope'" in missing.err
    assert no_service.code == 2 and "--service NAME" in no_service.err
    assert memory.code == 2 and "NATIVEKIT_REDIS_URL is 'memory://'" in memory.err
    assert down.code == 3 and "Is NATIVEKIT_REDIS_URL right" in down.err
    assert bad_duration.code == 2 and "'soon' is not a duration" in bad_duration.err


async def test_service_option_selects_the_default_key_prefix(
    redis_url: str, unique: str, cli: Cli
) -> None:
    """Without NATIVEKIT_SAGA_KEY_PREFIX, --service NAME reads the keys 'nk:saga:NAME'."""
    name = f"svc-{unique}"
    svc = nativekit.Service(
        name,
        settings=nativekit.Settings(
            redis={"url": redis_url}, saga={"shards": 4}, telemetry={"log_level": "CRITICAL"}
        ),
    )
    define(svc, Knobs())
    cli.env.update(NATIVEKIT_REDIS_URL=redis_url, NATIVEKIT_SAGA_SHARDS="4")
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with serve(svc):
            await svc.sagas.start("ship", {"order_id": "x"}, saga_id="x")
            await svc.sagas.wait("x", 10)
        by_option = await cli("sagas", "list", "--service", name, "--json")
        by_env = await cli("sagas", "show", "x", NATIVEKIT_SERVICE_NAME=name)
    finally:
        keys: list[Any] = [k async for k in client.scan_iter(match=f"nk:saga:{name}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert [i["saga_id"] for i in by_option.json()["items"]] == ["x"]
    assert by_env.code == 0 and "Status:      COMPLETED" in by_env.out
