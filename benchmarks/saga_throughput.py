"""Saga throughput: nativekit sagas on RedisSagaStore vs a hand-written redis-py loop.

A 3-step saga with no-op steps (each with a compensation), run at concurrency
1 and 100. In the same run, a hand-written loop persists the same transitions
with plain redis-py, one HSET per transition: saga created, each step started,
each step completed (with its result), saga completed — 8 round trips per saga.
nativekit persists the same information fenced by a lease token, with index
entries, in one Lua script per transition boundary ("step N completed" and
"step N+1 started" are one write): 4 round trips per saga.

A second reference, "hand loop, coalesced", does what nativekit does with 4
plain HSETs (no fencing, no indexes, no lease) to show the framework's own cost.

"nativekit_model" is the saga model's case: a 3-way parallel group of no-op
steps followed by a child saga (one no-op step), everything compensated; its
peer in the same run is the plain 3-step saga (``ratio_model_vs_3_steps``).
Target: at least 500 instances/s at concurrency 100. It costs 5 round trips per
instance: the create with the three members' starts, the group's completions with
the child step's start, the child's create and end, the parent's end (see "What
each kind of step costs" in docs/saga-model.md).

    python benchmarks/saga_throughput.py [--redis redis://127.0.0.1:6379/0] [--quick]
                                         [--postgres postgresql://host/db]
                                         [--loop uvloop|asyncio]

Every contender runs on uvloop by default: a service runs under uvicorn, whose event
loop is uvloop when it is installed, and nativekit depends on ``uvicorn[standard]``,
which installs it. ``--loop asyncio`` runs them on the standard library's loop.

With ``--postgres URL`` two more
contenders run in the same process: nativekit on PostgreSQL, whose steps each insert
one row through ``ctx.db`` (committed with the step's completion), against a
hand-written asyncpg loop doing the same writes (the saga row inserted; per step one
row update for "started", then in one transaction the step's insert and the row update
for "completed"; a final row update), through a pool of the same size (20). For
each contender it also reports round trips per saga (messages sent, asyncpg's statement
cache being warm; pool resets included), the statements in them (nativekit ends a step's
transaction with its write, COMMIT, the session reset and the next step's BEGIN in one
message; a session reset counts as one statement), commits per saga, and CPU per saga
of this process and of the contender's server processes (read from /proc when the
server runs on this machine): counts that hold on a busy machine where rates do not.

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import harness
import redis.asyncio as aioredis
import uvloop

import nativekit
from nativekit.saga import Saga, SagaContext

STEPS = ("reserve", "charge", "ship")
#: Alternating rounds per concurrency; the best round of each contender is reported
#: (the machine is shared, so the best round is the least disturbed one).
ROUNDS = 3


class Counting:
    """Counts round trips on a redis-py client: each command sent alone, and each pipeline
    (nativekit sends the calls of one event-loop turn as one pipeline, so at concurrency
    several sagas share a round trip)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.count = 0
        original = client.execute_command
        make_pipeline = client.pipeline

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(*args, **kwargs)

        def pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = make_pipeline(*args, **kwargs)
            execute = pipe.execute

            async def counted_execute(*args: Any, **kwargs: Any) -> Any:
                self.count += 1
                return await execute(*args, **kwargs)

            pipe.execute = counted_execute
            return pipe

        client.execute_command = counted  # type: ignore[method-assign]
        client.pipeline = pipeline  # type: ignore[method-assign]


async def drive(
    one: Callable[[int], Awaitable[None]], total: int, concurrency: int
) -> dict[str, float]:
    """Run ``one(i)`` for i < total with ``concurrency`` workers; sagas/s and latency."""
    latencies: list[float] = []
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < total:
            i = next_index
            next_index += 1
            started = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "sagas_per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
    }


async def nativekit_runner(url: str, prefix: str) -> tuple[Any, Counting, Any]:
    """A service with the 3-step saga on Redis; returns (service, counter, saga)."""
    svc = nativekit.Service(
        "bench",
        settings=nativekit.Settings(
            redis={"url": url}, saga={"key_prefix": prefix}, telemetry={"log_level": "WARNING"}
        ),
    )
    saga = svc.saga("bench", input=dict)

    async def noop(ctx: SagaContext[dict[str, Any]]) -> None:
        return None

    for name in STEPS:
        saga.step(name=name)(noop).compensate(noop)
    model_saga(svc, noop)
    counter = Counting(svc.redis)
    await svc.startup(hook_sigterm=False)
    nativekit.tune_gc()  # as a service process under load opts in (docs/performance.md)
    return svc, counter, saga


def model_saga(svc: Any, noop: Any) -> Saga[dict[str, Any]]:
    """The saga model's bench: a 3-way parallel group of no-op steps, then a child saga
    (one no-op step); everything compensated."""
    child: Saga[dict[str, Any]] = Saga("bench-child", input=dict)
    child.step(name="pay")(noop).compensate(noop)
    svc.add_saga(child)
    model = svc.saga("bench-model", input=dict)
    group = model.parallel("fan")
    for name in STEPS:
        group.step(name=name)(noop).compensate(noop)

    @model.child(child)
    async def payment(ctx: SagaContext[dict[str, Any]]) -> dict[str, Any]:
        return {}

    return model


async def hand_loop(client: aioredis.Redis, prefix: str, i: int, *, coalesced: bool) -> None:
    """Persist a 3-step saga's transitions by hand with HSET."""
    key = f"{prefix}:hand:{uuid.uuid4().hex}"
    now = repr(time.time())
    if coalesced:
        await client.hset(
            key,
            mapping={"status": "RUNNING", "input": "{}", "created": now, "step:reserve": "running"},
        )
        for n, name in enumerate(STEPS):
            await asyncio.sleep(0)  # the no-op step
            fields = {f"step:{name}": "completed", f"result:{name}": "null"}
            if n + 1 < len(STEPS):
                fields[f"step:{STEPS[n + 1]}"] = "running"
            else:
                fields["status"] = "COMPLETED"
            await client.hset(key, mapping=fields)
        return
    await client.hset(key, mapping={"status": "RUNNING", "input": "{}", "created": now})
    for name in STEPS:
        await client.hset(key, f"step:{name}", json.dumps({"status": "running", "attempts": 1}))
        await asyncio.sleep(0)  # the no-op step
        await client.hset(
            key,
            mapping={f"step:{name}": json.dumps({"status": "completed"}), f"result:{name}": "null"},
        )
    await client.hset(key, "status", "COMPLETED")


async def measure(url: str, total: dict[int, int], rounds: int = ROUNDS) -> dict[str, Any]:
    """Every figure of the benchmark."""
    prefix = f"bench:saga:{uuid.uuid4().hex[:8]}"
    svc, counter, saga = await nativekit_runner(url, prefix)
    # the same pool size as the service's client (NATIVEKIT_REDIS_MAX_CONNECTIONS=64), waiting
    # for a free connection instead of failing at concurrency 100
    hand_client = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(url, max_connections=64)
    )
    hand_counter = Counting(hand_client)
    results: dict[str, Any] = {}
    try:

        async def framework(i: int) -> None:
            handle = await svc.sagas.start(saga, {"i": i})
            record = await handle.wait(30)
            if record.status.value != "COMPLETED":
                raise RuntimeError(f"saga ended {record.status}")

        async def model(i: int) -> None:
            handle = await svc.sagas.start("bench-model", {"i": i})
            record = await handle.wait(30)
            if record.status.value != "COMPLETED" or "payment" not in record.results:
                raise RuntimeError(f"saga ended {record.status}: {record.error}")

        await drive(framework, 200, 50)  # warm-up: scripts loaded, pool filled
        await drive(model, 200, 50)
        await drive(lambda i: hand_loop(hand_client, prefix, i, coalesced=False), 200, 50)
        for concurrency, n in total.items():
            row: dict[str, Any] = {}
            contenders: list[tuple[str, Callable[[int], Awaitable[None]], Counting]] = [
                ("nativekit", framework, counter),
                ("nativekit_model", model, counter),
                (
                    "hand_loop",
                    lambda i: hand_loop(hand_client, prefix, i, coalesced=False),
                    hand_counter,
                ),
                (
                    "hand_loop_coalesced",
                    lambda i: hand_loop(hand_client, prefix, i, coalesced=True),
                    hand_counter,
                ),
            ]
            for _round in range(rounds):
                for label, one, count in contenders:
                    before = count.count
                    figures = await drive(one, n, concurrency)
                    figures["round_trips_per_saga"] = round((count.count - before) / n, 2)
                    if label not in row or figures["sagas_per_s"] > row[label]["sagas_per_s"]:
                        row[label] = figures
            row["ratio_vs_hand_loop"] = round(
                row["nativekit"]["sagas_per_s"] / row["hand_loop"]["sagas_per_s"], 2
            )
            row["ratio_vs_hand_loop_coalesced"] = round(
                row["nativekit"]["sagas_per_s"] / row["hand_loop_coalesced"]["sagas_per_s"], 2
            )
            row["ratio_model_vs_3_steps"] = round(
                row["nativekit_model"]["sagas_per_s"] / row["nativekit"]["sagas_per_s"], 2
            )
            results[f"c{concurrency}"] = row
    finally:
        try:
            await svc.shutdown()
        finally:  # both contenders' keys (the saga store's and the hand loop's) carry prefix
            nativekit.restore_gc()
            keys = [k async for k in hand_client.scan_iter(match=f"*{prefix}*", count=5000)]
            for start in range(0, len(keys), 1000):
                await hand_client.delete(*keys[start : start + 1000])
            await hand_client.aclose()
    return results


PG_POOL = 20


class Statements:
    """Counts messages sent (round trips), the statements in them and commits on the
    asyncpg connections it is attached to (``asyncpg.Connection.add_query_logger``). A
    message without parameters may hold several statements (nativekit ends a step's
    transaction with "write; COMMIT; session reset" in one); the session reset counts as
    one statement, as it did when sent alone. The benchmark's data holds no semicolons."""

    def __init__(self) -> None:
        self.messages = 0
        self.statements = 0
        self.commits = 0  # COMMITs plus writes run outside a transaction
        self._open: set[int] = set()
        self._pids: set[int] = set()

    def server_cpu(self) -> float:
        """CPU seconds used so far by the server processes of the attached connections
        (read from /proc: 0.0 unless the server runs on this machine)."""
        ticks = 0
        for pid in self._pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    async def attach(self, connection: Any) -> None:
        """The pool's ``init``: count what ``connection`` runs from now on."""
        key = id(connection)
        self._pids.add(connection.get_server_pid())
        reset = connection.get_reset_query().strip().rstrip(";")

        def logged(record: Any) -> None:
            self.messages += 1
            query = record.query
            if not record.args and reset:  # the session reset counts as one statement
                query = query.replace(reset, "SESSION RESET")
            parts = [query] if record.args else query.split(";")
            for part in parts:
                if not part.strip():
                    continue
                self.statements += 1
                verb = part.lstrip().split(None, 1)[0].upper()
                if verb == "SESSION":
                    continue  # the pool's reset, or one sent with a COMMIT: no write
                if verb == "BEGIN":
                    self._open.add(key)
                elif verb in ("COMMIT", "ROLLBACK"):
                    self._open.discard(key)
                    self.commits += verb == "COMMIT"
                elif key not in self._open:
                    self.commits += 1

        connection.add_query_logger(logged)


def counted_pools(counter: Statements) -> Callable[[], None]:
    """Make every asyncpg pool created from now on count on ``counter`` (the service's
    own pool is created inside nativekit); returns the undo."""
    import asyncpg

    original = asyncpg.create_pool

    def create_pool(*args: Any, **kwargs: Any) -> Any:
        return original(*args, init=counter.attach, **kwargs)

    asyncpg.create_pool = create_pool

    def undo() -> None:
        asyncpg.create_pool = original

    return undo


async def measure_postgres(url: str, total: dict[int, int], rounds: int) -> dict[str, Any]:
    """nativekit on PostgreSQL vs a hand-written asyncpg loop (schema dropped at the end)."""
    import asyncpg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    svc = nativekit.Service(
        "bench-pg",
        settings=nativekit.Settings(
            database={"url": url, "schema_name": schema, "migrate_on_start": True,
                      "pool_size": PG_POOL},
            telemetry={"log_level": "WARNING"},
        ),
    )  # fmt: skip
    saga = svc.saga("bench", input=dict)
    insert = f"INSERT INTO {schema}.effects (saga_id, step) VALUES ($1, $2)"

    async def effect(ctx: SagaContext[dict[str, Any]]) -> None:
        await ctx.db.execute(insert, ctx.saga_id, ctx.step)

    async def noop(ctx: SagaContext[dict[str, Any]]) -> None:
        return None

    for name in STEPS:
        saga.step(name=name)(effect).compensate(noop)

    async def framework(i: int) -> None:
        record = await (await svc.sagas.start(saga, {"i": i})).wait(60)
        if record.status.value != "COMPLETED":
            raise RuntimeError(f"saga ended {record.status}")

    counters = {"nativekit_pg": Statements(), "asyncpg_loop": Statements()}
    undo = counted_pools(counters["nativekit_pg"])
    try:
        await svc.startup(hook_sigterm=False)  # migrations: the service's pool is made
    finally:
        undo()
    nativekit.tune_gc()  # as the Redis contenders' process does (nativekit_runner)
    pool = await asyncpg.create_pool(
        url, min_size=PG_POOL, max_size=PG_POOL, init=counters["asyncpg_loop"].attach
    )
    await pool.execute(
        f"CREATE TABLE {schema}.effects (saga_id text, step text);"
        f"CREATE TABLE {schema}.hand (id text PRIMARY KEY, status text, doc jsonb)"
    )
    update = f"UPDATE {schema}.hand SET doc = doc || $2::jsonb WHERE id = $1"

    async def hand(i: int) -> None:
        saga_id = uuid.uuid4().hex
        await pool.execute(
            f"INSERT INTO {schema}.hand (id, status, doc) VALUES ($1, 'RUNNING', $2::jsonb)",
            saga_id, json.dumps({"input": "{}", "created": time.time()}),
        )  # fmt: skip
        for name in STEPS:
            await pool.execute(update, saga_id, json.dumps({f"step:{name}": "running"}))
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(insert, saga_id, name)
                done = {f"step:{name}": "completed", f"result:{name}": "null"}
                await connection.execute(update, saga_id, json.dumps(done))
        await pool.execute(f"UPDATE {schema}.hand SET status = 'COMPLETED' WHERE id = $1", saga_id)

    results: dict[str, Any] = {}
    try:
        await drive(framework, 100, 20)  # warm-up: statements prepared, pools filled
        await drive(hand, 100, 20)
        for concurrency, n in total.items():
            row: dict[str, Any] = {}
            for _round in range(rounds):
                for label, one in (("nativekit_pg", framework), ("asyncpg_loop", hand)):
                    count = counters[label]
                    before = (count.statements, count.commits, time.process_time())
                    messages, server = count.messages, count.server_cpu()
                    figures = await drive(one, n, concurrency)
                    figures["round_trips_per_saga"] = round((count.messages - messages) / n, 2)
                    figures["statements_per_saga"] = round((count.statements - before[0]) / n, 2)
                    figures["commits_per_saga"] = round((count.commits - before[1]) / n, 2)
                    # CPU of this process, and of the server processes of the contender's pool
                    figures["cpu_ms_per_saga"] = round(
                        (time.process_time() - before[2]) * 1000 / n, 3
                    )
                    figures["server_cpu_ms_per_saga"] = round(
                        (count.server_cpu() - server) * 1000 / n, 3
                    )
                    if label not in row or figures["sagas_per_s"] > row[label]["sagas_per_s"]:
                        row[label] = figures
            row["ratio_vs_asyncpg_loop"] = round(
                row["nativekit_pg"]["sagas_per_s"] / row["asyncpg_loop"]["sagas_per_s"], 2
            )
            results[f"c{concurrency}"] = row
        effects = await pool.fetchval(f"SELECT count(*) FROM {schema}.effects")
        results["effect_rows"] = int(effects)
    finally:
        try:
            await svc.shutdown()
        finally:
            await pool.execute(f"DROP SCHEMA {schema} CASCADE")
            await pool.close()
    return results


def main() -> None:
    """Parse arguments, measure, print a table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis",
        default=os.environ.get("NATIVEKIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument("--sagas", type=int, default=5000, help="sagas per run at c=100")
    parser.add_argument("--quick", action="store_true", help="one round of few sagas (smoke run)")
    parser.add_argument(
        "--postgres",
        default=None,
        help="also measure nativekit on this PostgreSQL against a hand-written asyncpg loop "
        "(make bench passes NATIVEKIT_TEST_DATABASE_URL)",
    )
    parser.add_argument("--only-postgres", action="store_true", help="skip the Redis runs")
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of every contender (uvloop: what uvicorn runs a service on)",
    )
    args = parser.parse_args()
    run = uvloop.run if args.loop == "uvloop" else asyncio.run
    total = {1: 50, 100: 300} if args.quick else {1: max(300, args.sagas // 10), 100: args.sagas}
    rounds = 1 if args.quick else ROUNDS
    pg_rows: list[dict[str, Any]] = []
    if args.postgres:
        postgres = run(measure_postgres(args.postgres, total, rounds))
        print(
            f"{'run (PostgreSQL)':<34}{'sagas/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
            f"{'RT/saga':>8}{'stmt/saga':>10}{'commits':>9}{'cpu ms':>8}{'srv ms':>8}"
        )
        for level, row in postgres.items():
            if not isinstance(row, dict):
                continue
            for label in ("nativekit_pg", "asyncpg_loop"):
                f = row[label]
                print(
                    f"{label + ' ' + level:<34}{f['sagas_per_s']:>10}{f['p50_ms']:>10}"
                    f"{f['p99_ms']:>10}{f['round_trips_per_saga']:>8}"
                    f"{f['statements_per_saga']:>10}{f['commits_per_saga']:>9}"
                    f"{f['cpu_ms_per_saga']:>8}{f['server_cpu_ms_per_saga']:>8}"
                )
            print(f"{'ratio vs asyncpg loop ' + level:<34}{row['ratio_vs_asyncpg_loop']:>10}x")
        print(json.dumps({"benchmark": "saga_throughput_postgres", "loop": args.loop,
                          **postgres}, separators=(",", ":")))  # fmt: skip
        pg_rows = [
            harness.row(
                f"saga (3 steps, each inserting a row through ctx.db) on PostgreSQL, {level}",
                unit="sagas/s",
                figure=row["nativekit_pg"]["sagas_per_s"],
                peer="hand-written asyncpg loop",
                peer_figure=row["asyncpg_loop"]["sagas_per_s"],
                target=1.0,
            )
            for level, row in postgres.items()
            if isinstance(row, dict)
        ]
        if args.only_postgres:
            return
    results = run(measure(args.redis, total, rounds))
    print(f"{'run':<34}{'sagas/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'RT/saga':>9}")
    for level, row in results.items():
        for label in ("nativekit", "nativekit_model", "hand_loop", "hand_loop_coalesced"):
            f = row[label]
            print(
                f"{label + ' ' + level:<34}{f['sagas_per_s']:>10}{f['p50_ms']:>10}"
                f"{f['p99_ms']:>10}{f['round_trips_per_saga']:>9}"
            )
        print(
            f"{'ratio vs hand loop ' + level:<34}{row['ratio_vs_hand_loop']:>10}x"
            f"   (vs coalesced: {row['ratio_vs_hand_loop_coalesced']}x)"
        )
        print(f"{'model vs 3 steps ' + level:<34}{row['ratio_model_vs_3_steps']:>10}x")
    rows = [
        harness.row(
            f"saga (3 no-op steps) on Redis, {level}",
            unit="sagas/s",
            figure=row["nativekit"]["sagas_per_s"],
            peer="hand-written redis-py loop",
            peer_figure=row["hand_loop"]["sagas_per_s"],
            target=1.0,
        )
        for level, row in results.items()
    ]
    rows += [
        harness.row(
            f"saga model (3-way parallel group + child saga) on Redis, {level}",
            unit="sagas/s",
            figure=row["nativekit_model"]["sagas_per_s"],
            peer="the plain 3-step saga, same run",
            peer_figure=row["nativekit"]["sagas_per_s"],
        )
        for level, row in results.items()
    ]
    rows += pg_rows
    first = rows[len(results) - 1]  # plain saga at c=100, the figure
    harness.headline(
        "saga_throughput",
        what=first["what"],
        unit=first["unit"],
        figure=first["figure"],
        peer=first["peer"],
        peer_figure=first["peer_figure"],
        target=first["target"],
        rows=[r for r in rows if r is not first],
        details={"loop": args.loop, **results},
    )


if __name__ == "__main__":
    main()
