"""Fixtures for messaging tests: services on memory or real backends, polling helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from nativekit import Settings


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
    return Settings(**values)  # type: ignore[arg-type]


async def eventually(
    condition: Callable[[], object], *, within: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until truthy or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within:g}s")
        await asyncio.sleep(0.02)
