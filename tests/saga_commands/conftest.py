"""Fixtures for the multi-process command/reply tests: processes, topics, ledgers, saga reads."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import nativekit
from nativekit.backends.redis._saga_store import RedisSagaStore
from nativekit.saga import SagaStore
from nativekit.saga._store.model import SagaRecord
from tests.saga_commands.shop import topics

PROC = Path(__file__).with_name("proc.py")
SHARDS = 4


@dataclass
class World:
    """One test's topics, Redis keys and processes."""

    kafka_url: str
    redis_url: str
    unique: str
    client: aioredis.Redis
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: variables every process gets on top of the defaults (another backend's URL)
    backend_env: dict[str, str] = field(default_factory=dict)
    #: where the processes keep saga state when it is not Redis (a PostgresSagaStore)
    store: SagaStore | None = None

    @property
    def names(self) -> dict[str, str]:
        return topics(f"t{self.unique}")

    @property
    def prefix(self) -> str:
        return f"test:cmd:{self.unique}"

    @property
    def ledger_key(self) -> str:
        return f"{self.prefix}:ledger"

    def env(self, role: str, **extra: str) -> dict[str, str]:
        values = {
            **os.environ,
            "NATIVEKIT_KAFKA_URL": self.kafka_url,
            "NATIVEKIT_REDIS_URL": self.redis_url,
            "NATIVEKIT_KAFKA_IDEMPOTENT_PRODUCER": "false",
            "NATIVEKIT_CONSUMER_SESSION_TIMEOUT_SECONDS": "6",
            "NATIVEKIT_CONSUMER_RETRY_BACKOFF_SECONDS": "0.05",
            "NATIVEKIT_CONSUMER_DEDUP_LEASE_SECONDS": "2",
            "NATIVEKIT_SAGA_KEY_PREFIX": f"{self.prefix}:saga",
            "NATIVEKIT_SAGA_SHARDS": str(SHARDS),
            "NATIVEKIT_SAGA_RECOVERY_INTERVAL_SECONDS": "0.2",
            "NATIVEKIT_SAGA_LEASE_SECONDS": "3",
            "NATIVEKIT_SAGA_REPLY_TOPIC": self.names["replies"],
            "NATIVEKIT_SAGA_OUTBOX_POLL_INTERVAL_SECONDS": "0.1",
            "NATIVEKIT_SAGA_OUTBOX_CLAIM_AFTER_SECONDS": "1",
            "NATIVEKIT_TELEMETRY_LOG_LEVEL": "WARNING",
            "NATIVEKIT_TELEMETRY_TRACING_ENABLED": "false",
            "NATIVEKIT_ENVIRONMENT": "test",
            "NATIVEKIT_HTTP_SHUTDOWN_GRACE_SECONDS": "1",
            "NATIVEKIT_SERVICE_NAME": f"{role}-{self.unique}",
            "TEST_PREFIX": f"t{self.unique}",
            "TEST_LEDGER": self.ledger_key,
            **self.backend_env,
        }
        values.update(extra)
        return values

    def spawn(self, role: str, **extra: str) -> subprocess.Popen[bytes]:
        """Start ``role`` as a process (replacing a dead one of that role)."""
        process = subprocess.Popen(
            [sys.executable, str(PROC), role],
            env=self.env(role, **extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if not os.environ.get("TEST_VERBOSE") else None,
        )
        self.processes[f"{role}-{len(self.processes)}"] = process
        return process

    async def sagas(self, ids: list[str]) -> dict[str, SagaRecord | None]:
        store = self.store or RedisSagaStore(
            self.client, prefix=f"{self.prefix}:saga", shards=SHARDS
        )
        return {i: await store.get(i) for i in ids}

    async def converged(self, ids: list[str], *, within: float) -> dict[str, SagaRecord]:
        """Wait until every saga is finished; return them."""
        deadline = time.monotonic() + within
        while True:
            records = await self.sagas(ids)
            if all(r is not None and r.status.finished for r in records.values()):
                return {k: v for k, v in records.items() if v is not None}
            if time.monotonic() > deadline:
                state = {k: (v.status.value, v.error) if v else None for k, v in records.items()}
                raise AssertionError(f"sagas not finished within {within:g}s: {state}")
            await asyncio.sleep(0.1)

    async def ledger(self) -> dict[str, int]:
        raw = await self.client.hgetall(self.ledger_key)
        return {k.decode(): int(v) for k, v in raw.items()}

    async def wait_for(self, condition: Callable[[], Any], *, within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not await condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {within:g}s")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running_world(
    kafka_url: str, redis_url: str, unique: str, **options: Any
) -> AsyncIterator[World]:
    """A World (``options``: its backend_env and store) with its topics created up front;
    its processes killed and its Redis keys removed afterwards."""
    client = aioredis.Redis.from_url(redis_url)
    w = World(kafka_url, redis_url, unique, client, **options)
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
        keys = [k async for k in client.scan_iter(match=f"*{w.prefix}*", count=500)]
        keys += [k async for k in client.scan_iter(match=f"nk:cmd:*{unique}*", count=500)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def world(kafka_url: str, redis_url: str, unique: str) -> AsyncIterator[World]:
    """The processes' world on Redis."""
    async with running_world(kafka_url, redis_url, unique) as w:
        yield w


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap."""
    process.kill()
    process.wait(timeout=10)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Logging is configured once per process by the first service: forget ours afterwards."""
    yield
    from nativekit._telemetry.logging import reset_logging

    reset_logging()
