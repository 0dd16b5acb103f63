"""Fixtures for messaging tests: services on memory or real backends, polling helpers."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from nativekit import Settings
from nativekit.messaging import GroupConsumer
from tests.support import grouped


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes started by a test; killed at the end whatever happened."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def kafka_settings(kafka_url: str, redis_url: str | None = None, **extra: object) -> Settings:
    """Settings for a service on the real broker (idempotent producer off for Tansu)."""
    values: dict[str, object] = {
        "kafka_url": kafka_url,
        "kafka_idempotent_producer": False,
        "consumer_session_timeout": 6.0,
        "consumer_retry_backoff": 0.01,
        "tracing_enabled": False,
    }
    if redis_url:
        values["redis_url"] = redis_url
    values.update(extra)
    return Settings(**grouped(values))


async def eventually(
    condition: Callable[[], object], *, within: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until truthy or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within:g}s")
        await asyncio.sleep(0.02)


async def new_topic(kafka_url: str, name: str, partitions: int) -> str:
    """Create ``name`` on the real broker with ``partitions`` partitions; returns the name."""
    from nativekit.backends.kafka._broker import KafkaBroker

    broker = KafkaBroker(kafka_settings(kafka_url))
    try:
        await broker.create_topics({name: partitions})
    finally:
        await broker.aclose()
    return name


@asynccontextmanager
async def group_member(kafka_url: str, topic: str, group: str) -> AsyncIterator[GroupConsumer]:
    """A started member of ``group`` reading ``topic`` on the real broker (no rebalance
    callbacks), stopped on exit."""
    from nativekit.backends.kafka._broker import KafkaBroker

    async def nothing(tps: object) -> None:
        return None

    broker = KafkaBroker(kafka_settings(kafka_url))
    member = broker.group_consumer([topic], group=group, on_assigned=nothing, on_revoked=nothing)
    await member.start()
    try:
        yield member
    finally:
        await member.stop()
        await broker.aclose()
