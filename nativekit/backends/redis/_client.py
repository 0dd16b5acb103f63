"""The shared Redis client of a service (redis-py asyncio)."""

from __future__ import annotations

import ssl
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from nativekit._health import CheckFunc, CheckResult
from nativekit.errors import BackendUnavailable, ConfigError
from nativekit.settings import Settings, mask_url, parse_sentinel_url

#: redis-py errors that mean "the server is not reachable or did not answer".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    TimeoutError,
    OSError,
)


class QueuingPool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool, with a fast path while a connection is free.

    redis-py 8 spends about a third of a command's client CPU acquiring and
    releasing the connection (a condition lock, a timeout scope, event
    dispatch and its own metrics bookkeeping). While a connection is idle, no
    task queues for one and the pool is not being reconfigured (maintenance,
    a held pool lock), taking and returning it are plain list operations,
    atomic on the event loop; otherwise the stock code runs. The fast path
    skips redis-py's own connection-count metrics (off unless its observability
    is enabled) and its after-release event, which only streaming credential
    providers use: nativekit authenticates with a password.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the fast path needs the list-based pool of redis-py >= 5.0.1
        self._fast = all(
            hasattr(self, name)
            for name in ("_available_connections", "_in_use_connections", "_condition")
        ) and hasattr(self, "ensure_connection")

    def _quiet(self) -> bool:
        lock = getattr(self, "_lock", None)  # redis-py < 6 has none
        return self._fast and not (
            self._condition._waiters
            or getattr(self, "_in_maintenance", False)
            or (lock is not None and lock.locked())
        )

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """A free connection at once, else wait for one (up to the pool's timeout)."""
        if not (self._quiet() and self._available_connections):
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        connection = self._available_connections.pop()
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: Any) -> None:
        """Return ``connection``; the stock path when a task waits or it must reconnect."""
        should_reconnect = getattr(connection, "should_reconnect", None)
        if not self._quiet() or (should_reconnect is not None and should_reconnect()):
            await super().release(connection)
            return
        self._in_use_connections.remove(connection)
        self._available_connections.append(connection)


def create_redis(settings: Settings) -> aioredis.Redis:
    """A pooled asyncio client for ``settings.redis.url`` with TLS, password and timeouts."""
    url = settings.redis.url
    if url.startswith("memory://"):
        raise ConfigError(
            "NATIVEKIT_REDIS_URL is 'memory://'; a Redis client needs 'redis://host:port/db'."
        )
    options: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout_seconds,
        "socket_timeout": settings.operation_timeout_seconds,
        "max_connections": settings.redis.max_connections,
        "health_check_interval": 30,
        "decode_responses": False,
    }
    if settings.redis.password is not None:
        options["password"] = settings.redis.password.get_secret_value()
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        if settings.redis.tls_ca_file:
            options["ssl_ca_certs"] = str(settings.redis.tls_ca_file)
        if settings.redis.tls_cert_file:
            options["ssl_certfile"] = str(settings.redis.tls_cert_file)
        if settings.redis.tls_key_file:
            options["ssl_keyfile"] = str(settings.redis.tls_key_file)
    if url.startswith("redis+sentinel://"):
        return _sentinel_client(settings, options)
    # A blocking pool makes callers wait for a free connection (up to the operation
    # timeout) instead of failing with "Too many connections" under bursts.
    pool = QueuingPool.from_url(url, timeout=settings.operation_timeout_seconds, **options)
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return client


class SentinelQueuingPool(SentinelConnectionPool, QueuingPool):
    """The pool of a Sentinel-named master: connects to the address the Sentinels give
    (again after a failover), and waits for a free connection like :class:`QueuingPool`."""

    async def aclose(self) -> None:
        """Close the pool and the connections to the Sentinels (redis-py leaves them)."""
        await super().aclose()
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.aclose()


def _sentinel_client(settings: Settings, options: dict[str, Any]) -> aioredis.Redis:
    """A client of the master that ``redis+sentinel://`` names, found through Sentinel."""
    parsed = parse_sentinel_url(settings.redis.url)
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout_seconds,
        "socket_timeout": settings.operation_timeout_seconds,
        # The next Sentinel is asked at once; redis-py's retries per Sentinel took 3.7 s
        # to report that none answers (longer than a readiness check may take).
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.redis.sentinel_password is not None:
        sentinel_options["password"] = settings.redis.sentinel_password.get_secret_value()
    if parsed.username:
        options["username"] = parsed.username
    if parsed.password is not None and "password" not in options:
        options["password"] = parsed.password
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        parsed.master,
        connection_pool_class=SentinelQueuingPool,
        db=parsed.db,
        timeout=settings.operation_timeout_seconds,
        **options,
    )
    return client


def unavailable(settings: Settings, operation: str, exc: BaseException) -> BackendUnavailable:
    """Translate a redis-py error into :class:`BackendUnavailable` naming the URL to check."""
    return BackendUnavailable(
        f"Redis at {mask_url(settings.redis.url)} failed {operation}: {exc}. "
        "Is NATIVEKIT_REDIS_URL right and the server up?"
    )


def redis_check(client: aioredis.Redis, settings: Settings) -> CheckFunc:
    """A readiness check that pings Redis and reports the round trip in ms."""
    import time

    async def check() -> CheckResult:
        started = time.perf_counter()
        try:
            await client.ping()
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(settings, "PING", exc) from exc
        return CheckResult(
            observed_value=round((time.perf_counter() - started) * 1000, 2), observed_unit="ms"
        )

    return check
