"""What operator commands share: the services' settings, connections, error translation.

The commands read the same ``NATIVEKIT_*`` variables and ``.env`` file as the
services (:class:`nativekit.Settings`), so they reach the same Redis and Kafka
with the same TLS and SASL options, saga key prefix and shard count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from nativekit.cli._common import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, CommandError
from nativekit.errors import BackendUnavailable, ConfigError, NativekitError
from nativekit.settings import Settings

if TYPE_CHECKING:
    import redis.asyncio as aioredis

T = TypeVar("T")


def load_settings() -> Settings:
    """The settings from the environment and ``.env``; invalid ones are a usage error."""
    try:
        return Settings()
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc


def run(action: Coroutine[Any, Any, T]) -> T:
    """Run ``action``; unreachable backends exit 3, other nativekit errors exit 1."""
    # the drivers log connection failures on their own; the translated error says it better
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(action)
    except BackendUnavailable as exc:
        raise CommandError(str(exc), EXIT_UNREACHABLE) from exc
    except ConfigError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    except NativekitError as exc:
        raise CommandError(str(exc), EXIT_FAILED) from exc


def require_redis(settings: Settings, what: str) -> None:
    """Refuse ``memory://``: that state lives inside each service process."""
    if settings.redis.url.startswith("memory://"):
        raise CommandError(
            f"NATIVEKIT_REDIS_URL is 'memory://', so {what} lives inside each service "
            "process and no other process can reach it; set NATIVEKIT_REDIS_URL to the "
            "Redis your services use (e.g. redis://redis:6379/0).",
            EXIT_USAGE,
        )


def require_kafka(settings: Settings) -> None:
    """Refuse ``memory://`` Kafka: its topics live inside one process."""
    if settings.kafka.url.startswith("memory://"):
        raise CommandError(
            "NATIVEKIT_KAFKA_URL is 'memory://', so topics live inside each service "
            "process; set NATIVEKIT_KAFKA_URL to your cluster (kafka://host:port).",
            EXIT_USAGE,
        )


@asynccontextmanager
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client for the services' Redis, closed on exit."""
    from nativekit.backends.redis._client import create_redis

    client = create_redis(settings)
    try:
        yield client
    finally:
        await client.aclose()


def echo_err(message: str) -> None:
    """A note for people on stderr (keeps stdout clean for ``--json``)."""
    click.echo(message, err=True)
