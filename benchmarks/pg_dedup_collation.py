"""Server CPU of the PostgreSQL dedup store by the collation of its key columns.

What giving ``dedup.namespace`` and ``dedup.key`` the collation ``"C"`` would save (a
migration measured and left out: it rebuilds the primary key under a lock on the table;
benchmarks/README.md): one schema per variant, the columns given the variant's
collation after the migrations (``default``: the database's, as shipped; ``C``;
``icu``: ``en-US-x-icu``, standing in for the ``en_US.UTF-8`` many servers default to),
then fresh keys claimed in batches of 500 and finished, on one pooled connection so
one backend does the work. Variants alternate within every round; the figures are the
medians of the rounds: CPU of that backend (``/proc``) and of this process, per 1,000
keys claimed and finished.

    python benchmarks/pg_dedup_collation.py [--url URL] [--keys N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from nativekit.backends.postgres import Database, PostgresDedupStore, upgrade
from nativekit.settings import Settings

BATCH = 500
RETAIN = 7 * 86400.0
TICK = os.sysconf("SC_CLK_TCK")
COLLATIONS = {"default": "default", "C": "C", "icu": "en-US-x-icu"}


def backend_cpu(pid: int) -> float:
    """User+system CPU seconds of process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def variant(url: str, collation: str) -> tuple[Database, PostgresDedupStore, int]:
    """A migrated schema whose key columns have ``collation``; its store and backend pid."""
    schema = f"bench_coll_{uuid.uuid4().hex[:8]}"
    migrator = Database(Settings(database={"url": url, "schema_name": schema}))
    await upgrade(migrator)
    async with migrator.connection("set the collation") as connection:
        await connection.execute(
            f'ALTER TABLE {schema}.dedup ALTER COLUMN namespace TYPE text COLLATE "{collation}", '
            f'ALTER COLUMN key TYPE text COLLATE "{collation}"'
        )
    await migrator.aclose()
    database = Database(Settings(database={"url": url, "schema_name": schema, "pool_size": 1}))
    store = PostgresDedupStore(database, namespace="orders:on_payment", retention=RETAIN)
    async with database.connection("bench pid") as connection:
        pid = int(await connection.fetchval("SELECT pg_backend_pid()"))
    return database, store, pid


async def one_round(store: PostgresDedupStore, pid: int, keys: int) -> tuple[float, float]:
    """Claim and finish ``keys`` fresh keys; (server, client) ms per 1,000."""
    batches = [[str(uuid.uuid4()) for _ in range(BATCH)] for _ in range(keys // BATCH)]
    server, client = backend_cpu(pid), time.process_time()
    for batch in batches:
        claims = await store.claim_many(batch, lease=30)
        await store.finish_many(claims, retain=RETAIN)
    scale = 1e6 / (len(batches) * BATCH)
    return (backend_cpu(pid) - server) * scale, (time.process_time() - client) * scale


async def run(url: str, keys: int, rounds: int) -> None:
    variants: dict[str, Any] = {}
    try:
        for name, collation in COLLATIONS.items():
            variants[name] = await variant(url, collation)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _, store, pid in variants.values():
            await one_round(store, pid, 2 * BATCH)  # warm-up
        for n in range(rounds):
            order = list(variants) if n % 2 == 0 else list(variants)[::-1]
            for name in order:
                _, store, pid = variants[name]
                results[name].append(await one_round(store, pid, keys))
        print(f"load average {os.getloadavg()[0]:.1f}; ms per 1,000 keys, medians of {rounds}")
        for name, rows in results.items():
            server = statistics.median(r[0] for r in rows)
            client = statistics.median(r[1] for r in rows)
            print(f"{name:>8}: server {server:5.1f}  client {client:4.1f}")
    finally:
        connection = await asyncpg.connect(url)
        try:
            for database, _, _ in variants.values():
                await database.aclose()
                await connection.execute(f"DROP SCHEMA {database.schema} CASCADE")
        finally:
            await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--keys", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.url, args.keys, args.rounds))


if __name__ == "__main__":
    main()
