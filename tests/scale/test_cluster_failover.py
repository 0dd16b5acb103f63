"""A Redis Cluster master SIGKILLed mid-load: its replica takes over, every saga ends
COMPLETED and every participant effect happens once (no saga lost or run twice, no
command or reply handled twice).

The orchestrator and both participants are processes on a private 3-master cluster;
the effects ledger sits on the single test Redis, out of the failover's way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

import nativekit
from nativekit.backends.redis import create_redis
from nativekit.testing import servers
from tests.saga_commands.conftest import World
from tests.saga_commands.test_across_services import participants
from tests.saga_commands.test_crashes import _check, _count, _errors

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.slow]
N = 40


class LedgerWorld(World):
    """A world whose ledger is read from the single test Redis."""

    ledger_client: Any = None

    async def ledger(self) -> dict[str, int]:
        raw = await self.ledger_client.hgetall(self.ledger_key)
        return {k.decode(): int(v) for k, v in raw.items()}


@pytest.fixture
def private_cluster() -> Iterator[servers.RedisClusterServer]:
    """A cluster of this test's own (it kills a node)."""
    cluster = servers.start_redis_cluster(reuse=False)
    yield cluster
    cluster.stop()


@pytest.fixture
async def world(
    kafka_url: str, redis_url: str, private_cluster: servers.RedisClusterServer, unique: str
) -> AsyncIterator[LedgerWorld]:
    """Processes on the private cluster, the ledger on the test Redis."""
    client: Any = create_redis(
        nativekit.Settings(_env_file=None, redis={"url": private_cluster.url})
    )
    w = LedgerWorld(kafka_url, private_cluster.url, unique, client)
    w.ledger_client = aioredis.Redis.from_url(redis_url)
    from nativekit.backends.kafka._broker import KafkaBroker

    broker = KafkaBroker(nativekit.Settings(kafka={"url": kafka_url, "idempotent_producer": False}))
    await broker.create_topics({name: 4 for name in w.names.values()})
    await broker.aclose()
    original = w.env
    w.env = lambda role, **extra: original(role, TEST_LEDGER_URL=redis_url, **extra)  # type: ignore[method-assign]
    try:
        yield w
    finally:
        for process in w.processes.values():
            if process.poll() is None:
                process.kill()
        for process in w.processes.values():
            process.wait(timeout=10)
        await w.ledger_client.delete(w.ledger_key)
        await w.ledger_client.aclose()
        await client.aclose()


async def test_master_killed_mid_load_loses_and_doubles_nothing(
    world: LedgerWorld, private_cluster: servers.RedisClusterServer
) -> None:
    """SIGKILL the master of a saga shard while 40 sagas are in flight: its replica is
    promoted, every saga completes, each reserve and charge is applied exactly once."""
    await participants(world, TEST_DELAY="0.5")
    data = [{"order_id": f"{world.unique}-{i}"} for i in range(N)]
    ids = [f"order-{d['order_id']}" for d in data]
    world.spawn("orders", TEST_START=json.dumps(data), TEST_TIMEOUT="15")
    await world.wait_for(
        lambda: _count(world, ":reserve:entered", 5), within=60, what="reserves in flight"
    )
    shard = f"{{{world.prefix}:saga:00}}"
    victim = private_cluster.master_of(key_slot(shard.encode()))
    victim.kill()
    killed = time.monotonic()
    await world.wait_for(
        lambda: _promoted(private_cluster, victim), within=30, what="a replica promoted"
    )
    records = await world.converged(ids, within=120)
    assert {r.status.value for r in records.values()} == {"COMPLETED"}, _errors(records)
    _check(records, await world.ledger())
    assert time.monotonic() - killed < 120


async def _promoted(cluster: servers.RedisClusterServer, victim: servers.ClusterNode) -> bool:
    """Three live masters again and the cluster says ok."""

    def check() -> bool:
        live = [n for n in cluster.masters() if n.port != victim.port]
        return len(live) == 3 and cluster.healthy()

    return await asyncio.to_thread(check)
