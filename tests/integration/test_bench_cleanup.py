"""The benchmarks leave nothing behind in the Redis and the broker they ran against."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from nativekit.testing import databases, servers

ROOT = Path(__file__).resolve().parents[2]

# (script and arguments, its Kafka topics' name start); --quick where the script has it
BENCHMARKS = {
    "cache_hit": (["benchmarks/cache_hit.py", "--quick"], None),
    "saga_throughput": (["benchmarks/saga_throughput.py", "--quick"], None),
    "consumer_throughput": (["benchmarks/consumer_throughput.py", "--quick"], "bench-"),
    "saga_command_reply": (["benchmarks/saga_command_reply.py", "--quick"], "bench."),
}


@pytest.fixture
def empty_database(redis_server: servers.Server) -> Iterator[str]:
    """A logical database of this test alone, with nothing in it but the claim's keys."""
    database = databases.claim_database(redis_server.url)
    assert database.index is not None, "the test Redis has no free logical database"
    client = redis.Redis.from_url(database.url)
    try:
        leftovers = [k for k in client.scan_iter(count=1000) if not _claim_key(k)]
        if leftovers:  # an earlier test run's: not this test's to judge
            client.delete(*leftovers)
        yield database.url
    finally:
        client.close()
        database.release()


def _claim_key(key: bytes) -> bool:
    return key.decode() in (databases.MARKER_KEY, databases.LEASE_KEY)


async def _topics(kafka_url: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_url.partition("://")[2])
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.redis
@pytest.mark.kafka
@pytest.mark.timeout(600)  # a benchmark is CPU-bound: minutes on a loaded machine
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_quick_benchmark_leaves_no_key_and_no_topic(
    name: str, empty_database: str, kafka_url: str
) -> None:
    """After a --quick run the benchmark's Redis database is empty and its topics are gone."""
    command, topic_start = BENCHMARKS[name]
    before = asyncio.run(_topics(kafka_url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATIVEKIT_")}
    env.update(NATIVEKIT_TEST_REDIS_URL=empty_database, NATIVEKIT_TEST_KAFKA_URL=kafka_url)
    ran = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=500
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    client = redis.Redis.from_url(empty_database)
    try:
        left = sorted(k.decode() for k in client.scan_iter(count=1000) if not _claim_key(k))
    finally:
        client.close()
    assert left == [], f"{name} left {len(left)} keys, e.g. {left[:5]}"
    if topic_start:
        made = {t for t in asyncio.run(_topics(kafka_url)) - before if t.startswith(topic_start)}
        assert made == set(), f"{name} left topics {sorted(made)}"
