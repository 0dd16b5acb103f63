"""Sagas with commands and replies across processes, on a real Redis Cluster: saga state,
outbox streams and relay, reply store and consumer dedup of every process on 3 masters.

The tests are those of tests/saga_commands, run here with a ``world`` on the cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import nativekit
from nativekit.backends.redis import create_redis
from nativekit.testing import servers
from tests.saga_commands.conftest import World
from tests.saga_commands.test_across_services import (
    test_duplicate_commands_get_identical_replies_and_one_effect,
    test_happy_failure_and_timeout_paths,
)
from tests.saga_commands.test_crashes import test_orchestrator_killed_while_waiting_for_replies

pytestmark = [pytest.mark.redis, pytest.mark.kafka, pytest.mark.slow, pytest.mark.scale]

__all__ = [
    "test_duplicate_commands_get_identical_replies_and_one_effect",
    "test_happy_failure_and_timeout_paths",
    "test_orchestrator_killed_while_waiting_for_replies",
]


@pytest.fixture
async def world(
    kafka_url: str, redis_cluster: servers.RedisClusterServer, unique: str
) -> AsyncIterator[World]:
    """The processes of tests/saga_commands with NATIVEKIT_REDIS_URL=redis+cluster://."""
    settings = nativekit.Settings(_env_file=None, redis={"url": redis_cluster.url})
    client: Any = create_redis(settings)
    w = World(kafka_url, redis_cluster.url, unique, client)
    from nativekit.backends.kafka._broker import KafkaBroker

    broker = KafkaBroker(nativekit.Settings(kafka={"url": kafka_url, "idempotent_producer": False}))
    await broker.create_topics({name: 4 for name in w.names.values()})
    await broker.aclose()
    try:
        yield w
    finally:
        for process in w.processes.values():
            if process.poll() is None:
                process.kill()
        for process in w.processes.values():
            process.wait(timeout=10)
        for pattern in (f"*{w.prefix}*", f"nk:cmd:*{unique}*", f"nk:dedup:*{unique}*"):
            async for key in client.scan_iter(match=pattern, count=500):
                await client.delete(key)
        await client.aclose()
