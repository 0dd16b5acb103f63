"""Fixtures for saga tests: services on real Redis with unique key prefixes, a fake participant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from saga_support import Participant

import nativekit
from tests.support import grouped


@pytest.fixture
def participant() -> Participant:
    """A fresh fake participant."""
    return Participant()


@pytest.fixture
async def make_service(
    redis_url: str, unique: str
) -> AsyncIterator[Callable[..., nativekit.Service]]:
    """Build services on the real Redis sharing one unique saga key prefix; keys removed after."""
    prefix = f"test:saga:{unique}"

    def make(name: str = "orders", **overrides: Any) -> nativekit.Service:
        options: dict[str, Any] = {
            "redis_url": redis_url,
            "saga_key_prefix": prefix,
            "saga_shards": 4,
            "saga_recovery_interval": 0.1,
            "log_level": "WARNING",
        }
        options.update(overrides)
        if options.get("saga_operator_api") and "auth" not in options:
            # these tests are about the operator actions; tests/auth covers its authentication
            options["auth"] = {"insecure_operator_api": True}
        return nativekit.Service(name, settings=nativekit.Settings(**grouped(options)))

    yield make
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match=f"*{prefix}*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
