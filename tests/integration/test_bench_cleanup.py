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
    # its svc.publish phase hung once in a few runs: the publishing service's shutdown
    # waited for an outbox relay that lost its cancellation (issue 21, fixed)
    "consumer_throughput": (["benchmarks/consumer_throughput.py", "--quick"], "bench-"),
    "consumer_cpu": (["benchmarks/consumer_cpu.py", "--quick"], "bench-"),
    "saga_command_reply": (["benchmarks/saga_command_reply.py", "--quick"], "bench."),
    "engine_limits": (["benchmarks/engine_limits.py", "--quick"], "bench-limits-"),
}


@pytest.fixture
def own_database(redis_server: servers.Server) -> Iterator[str]:
    """A logical database of this test alone (claimed: nobody else writes to it)."""
    database = databases.claim_database(redis_server.url)
    assert database.index is not None, "the test Redis has no free logical database"
    yield database.url
    database.release()


def _keys(url: str) -> set[str]:
    """The database's keys (it is this test's own: the scan walks nobody else's data)."""
    with redis.Redis.from_url(url) as client:
        return {k.decode() for k in client.scan_iter(count=1000)}


async def _topics(kafka_url: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_url.partition("://")[2])
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.kafka
@pytest.mark.timeout(600)  # a benchmark is CPU-bound: minutes on a loaded machine
@pytest.mark.parametrize(
    "name",
    [
        # its quick run alone takes about two minutes: in make test-long, not make test
        pytest.param(name, marks=pytest.mark.long_check) if name.startswith("consumer_") else name
        for name in BENCHMARKS
    ],
)
def test_quick_benchmark_leaves_no_key_and_no_topic(
    name: str, own_database: str, kafka_url: str
) -> None:
    """After a --quick run no key the benchmark wrote is left, and none of its topics."""
    command, topic_start = BENCHMARKS[name]
    before = asyncio.run(_topics(kafka_url))
    earlier = _keys(own_database)  # the claim's, and what an earlier test run left
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATIVEKIT_")}
    env.update(NATIVEKIT_TEST_REDIS_URL=own_database, NATIVEKIT_TEST_KAFKA_URL=kafka_url)
    ran = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=500
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    left = sorted(_keys(own_database) - earlier)
    assert left == [], f"{name} left {len(left)} keys, e.g. {left[:5]}"
    if topic_start:
        made = {t for t in asyncio.run(_topics(kafka_url)) - before if t.startswith(topic_start)}
        assert made == set(), f"{name} left topics {sorted(made)}"
