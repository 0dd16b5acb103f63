"""A consumer whose handler writes in its Transaction, SIGKILLed at every point between the
business write and the commits: each message's row exists exactly once (a ledger table with
no unique key), none is lost, and the offsets end committed."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from pydantic import BaseModel

from nativekit import Service
from nativekit.backends.postgres import Database
from tests.messaging.conftest import kafka_settings
from tests.messaging.test_crash import committed_offset

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
WORKER = Path(__file__).with_name("pg_crash_worker.py")
N = 12
TARGET = 5


class Order(BaseModel):
    """The event."""

    order_id: str


def spawn(
    kafka_url: str, database: Database, topic: str, group: str, crash_at: str
) -> subprocess.Popen[bytes]:
    """Start a worker process on the test's schema."""
    env = {
        **os.environ,
        "NATIVEKIT_KAFKA_URL": kafka_url,
        "NATIVEKIT_DATABASE_URL": database.url,
        "NATIVEKIT_DATABASE_SCHEMA_NAME": database.schema,
        "NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "NATIVEKIT_CONSUMER_SESSION_TIMEOUT_SECONDS": "6",
        "NATIVEKIT_CONSUMER_DEDUP_LEASE_SECONDS": "2",
        "NATIVEKIT_TELEMETRY_LOG_LEVEL": "WARNING",
        "NATIVEKIT_ENVIRONMENT": "test",
    }
    return subprocess.Popen(
        [sys.executable, str(WORKER), topic, group, crash_at, str(TARGET), database.schema],
        env=env,
        stdout=subprocess.PIPE if crash_at == "none" else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("crash_at", ["before_write", "after_write", "after_done", "after_offset"])
async def test_a_killed_consumer_applies_each_transactional_effect_exactly_once(
    crash_at: str,
    kafka_url: str,
    pg_database: Database,
    unique: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Killed before or after the business write, after the DONE commit or after the
    offset commit: a second worker finishes, and every ledger row exists exactly once."""
    topic, group = f"pgcrash-{unique}", f"pgcrash-{unique}"
    async with pg_database.connection("create the ledger") as connection:
        await connection.execute(f"CREATE TABLE {pg_database.schema}.ledger (order_id text)")
    svc = Service("pg-crash-producer", settings=kafka_settings(kafka_url))
    await svc.messaging.broker.create_topics({topic: 1})
    for i in range(N):
        await svc.publish(topic, Order(order_id=f"o-{i}"), message_id=f"m-{i}")
    await svc.messaging.broker.aclose()

    async def ledger() -> collections.Counter[str]:
        async with pg_database.connection("read the ledger") as connection:
            rows = await connection.fetch(f"SELECT order_id FROM {pg_database.schema}.ledger")
        return collections.Counter(r["order_id"] for r in rows)

    first = spawn(kafka_url, pg_database, topic, group, crash_at)
    processes.append(first)
    assert await asyncio.wait_for(asyncio.to_thread(first.wait), 90) == -signal.SIGKILL
    at_crash = await ledger()
    assert (f"o-{TARGET}" in at_crash) is (crash_at in ("after_done", "after_offset"))
    second = spawn(kafka_url, pg_database, topic, group, "none")
    processes.append(second)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    counts = await ledger()
    while len(counts) < N:
        assert loop.time() < deadline, f"lost messages: {sorted(counts)}"
        await asyncio.sleep(0.1)
        counts = await ledger()
    while await committed_offset(kafka_url, group, topic) != N:
        assert loop.time() < deadline, "offsets not committed"
        await asyncio.sleep(0.2)
    assert second.stdout is not None
    with second.stdout:
        assert await asyncio.to_thread(second.stdout.readline) == b"STARTED\n"
    second.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(asyncio.to_thread(second.wait), 30) == 0
    counts = await ledger()
    assert counts == collections.Counter({f"o-{i}": 1 for i in range(N)}), counts
    connection = await asyncpg.connect(pg_database.url)
    try:
        marks = await connection.fetch(
            f"SELECT key, state FROM {pg_database.schema}.dedup WHERE namespace = $1",
            f"{group}:main.<locals>.handle",
        )
    finally:
        await connection.close()
    assert {r["key"]: r["state"] for r in marks} == {f"m-{i}": "D" for i in range(N)}
