"""asyncpg against psycopg 3 on the writes the PostgreSQL saga store makes.

One "transition" is what a saga step costs the store: in one transaction, a
fenced ``UPDATE`` of the saga row (a JSONB merge of the changed fields, guarded by
the lease token) and an ``INSERT`` of one outbox row. Both drivers run the same
SQL through their own pool (same size) at the same concurrency, interleaved in
rounds; the figure is transitions/s (median of the rounds) and the CPU time this
process spent per transition (the driver's own cost, which is what differs).

    python benchmarks/postgres_driver.py [--url postgresql://...] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

Transition = Callable[[int], Awaitable[None]]
Contender = tuple[Transition, Callable[[], Awaitable[None]]]

SCHEMA = f"bench_driver_{uuid.uuid4().hex[:8]}"
SETUP = f"""
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.saga (id text PRIMARY KEY, token text, doc jsonb NOT NULL,
                            updated double precision);
CREATE TABLE {SCHEMA}.outbox (seq bigserial PRIMARY KEY, saga_id text, entry text);
"""
UPDATE_PG = (
    f"UPDATE {SCHEMA}.saga SET doc = doc || $3::jsonb, updated = $4 WHERE id = $1 AND token = $2"
)
UPDATE_PSY = (
    f"UPDATE {SCHEMA}.saga SET doc = doc || %s::jsonb, updated = %s WHERE id = %s AND token = %s"
)
INSERT_PG = f"INSERT INTO {SCHEMA}.outbox (saga_id, entry) VALUES ($1, $2)"
INSERT_PSY = f"INSERT INTO {SCHEMA}.outbox (saga_id, entry) VALUES (%s, %s)"
SAGAS = 200
FIELDS = json.dumps({"step:reserve": '{"status":"completed","attempts":1}', "result:reserve": "{}"})
ENTRY = '{"i":"x","t":"orders.events","k":"k","v":"{}","e":"E","h":{},"c":0}'


async def asyncpg_contender(
    url: str, pool_size: int
) -> tuple[Callable[[int], Awaitable[None]], Callable[[], Awaitable[None]]]:
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=pool_size, max_size=pool_size)

    async def transition(i: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            saga = f"s{i % SAGAS}"
            await conn.execute(UPDATE_PG, saga, "t", FIELDS, time.time())
            await conn.execute(INSERT_PG, saga, ENTRY)

    return transition, pool.close


async def psycopg_contender(
    url: str, pool_size: int
) -> tuple[Callable[[int], Awaitable[None]], Callable[[], Awaitable[None]]]:
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(url, min_size=pool_size, max_size=pool_size, open=False)
    await pool.open(wait=True)

    async def transition(i: int) -> None:
        async with pool.connection() as conn, conn.transaction():
            saga = f"s{i % SAGAS}"
            await conn.execute(UPDATE_PSY, (FIELDS, time.time(), saga, "t"))
            await conn.execute(INSERT_PSY, (saga, ENTRY))

    return transition, pool.close


async def run(
    transition: Callable[[int], Awaitable[None]], count: int, concurrency: int
) -> tuple[float, float]:
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await transition(i)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, cpu / count * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import asyncpg

    admin = await asyncpg.connect(args.url)
    await admin.execute(SETUP)
    rows = [(f"s{i}", "t", "{}") for i in range(SAGAS)]
    await admin.executemany(
        f"INSERT INTO {SCHEMA}.saga (id, token, doc) VALUES ($1,$2,$3::jsonb)", rows
    )
    count, rounds = (500, 1) if args.quick else (3000, args.rounds)
    contenders = {"asyncpg": asyncpg_contender, "psycopg 3": psycopg_contender}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    try:
        built = {name: await make(args.url, 20) for name, make in contenders.items()}
        for _ in range(rounds):
            for name, (transition, _) in built.items():
                results[name].append(await run(transition, count, 100))
        for _, close in built.values():
            await close()
    finally:
        await admin.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
        await admin.close()
    print("| driver | transitions/s | CPU µs/transition |\n| --- | ---: | ---: |")
    for name, values in results.items():
        rate = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"| {name} | {rate:,.0f} | {cpu:,.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
