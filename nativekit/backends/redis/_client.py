"""The shared Redis client of a service (redis-py asyncio)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from nativekit._health import CheckFunc, CheckResult

try:  # redis-py >= 7
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # pragma: no cover - older redis-py
    MaintNotificationsConfig = None  # type: ignore[assignment,misc]

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


class QueuingPool(aioredis.ConnectionPool):
    """A connection pool whose callers wait (up to ``timeout`` seconds) for a free
    connection instead of failing with "Too many connections" under bursts.

    redis-py 8 spends about a third of a command's client CPU taking and returning
    the connection (a condition lock, a timeout scope, event dispatch, its own
    connection-count bookkeeping). Here a semaphore of ``max_connections`` slots
    does the waiting, so a caller that finds a slot free neither locks nor starts
    a timeout, and a returned connection waits in this pool's own idle list for
    the next caller: to redis-py it stays taken (``get_connection_count`` counts it
    in use). New connections come from redis-py's public
    ``get_available_connection`` and every one handed out is checked with
    ``ensure_connection``, the two halves of its own ``get_connection``. A
    connection that must reconnect, and every connection while maintenance
    notifications are enabled, goes back through redis-py's own ``release``.
    """

    def __init__(self, *args: Any, timeout: float | None = 20, **kwargs: Any) -> None:
        self._idle: list[Any] = []  # returned by callers, kept for the next one
        super().__init__(*args, **kwargs)
        #: seconds a caller waits for a free connection (None: without limit)
        self.timeout = timeout
        self._slots = asyncio.Semaphore(self.max_connections)

    def reset(self) -> None:
        """Forget every connection (redis-py calls it on creation and after a fork)."""
        super().reset()  # type: ignore[no-untyped-call]
        self._idle = []

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        """A connected connection; waits for a free one (up to :attr:`timeout`)."""
        slots = self._slots
        if slots.locked():
            try:
                async with asyncio.timeout(self.timeout):
                    await slots.acquire()
            except TimeoutError:
                raise redis.exceptions.ConnectionError("No connection available.") from None
        else:
            await slots.acquire()
        try:
            if self._idle:
                connection = self._idle.pop()
            elif not _SPLIT_ACQUIRE or self.maint_notifications_enabled():  # type: ignore[no-untyped-call]
                return await super().get_connection()  # type: ignore[no-untyped-call]
            else:
                connection = self.get_available_connection()  # type: ignore[no-untyped-call]
            try:
                await self.ensure_connection(connection)
            except BaseException:
                await super().release(connection)
                raise
            return connection
        except BaseException:
            slots.release()
            raise

    async def release(self, connection: Any) -> None:
        """Keep ``connection`` for the next caller and free its slot."""
        try:
            if (
                _SPLIT_ACQUIRE
                and not connection.should_reconnect()
                and not self.maint_notifications_enabled()  # type: ignore[no-untyped-call]
            ):
                self._idle.append(connection)
            else:
                await super().release(connection)
        finally:
            self._slots.release()

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Disconnect the pool's connections (the idle ones too: redis-py counts them taken)."""
        await super().disconnect(inuse_connections)
        if not inuse_connections:
            for connection in self._idle:
                await connection.disconnect()


#: redis-py >= 7 splits taking a connection from checking it, in public methods
_SPLIT_ACQUIRE = all(
    hasattr(aioredis.ConnectionPool, name)
    for name in ("get_available_connection", "ensure_connection", "maint_notifications_enabled")
)


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
    if MaintNotificationsConfig is not None:
        # Maintenance notifications need RESP3; on nativekit's RESP2 redis-py's "auto"
        # never turns them on. Off, QueuingPool takes connections without the pool's lock.
        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
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
    if "+cluster://" in url:
        from nativekit.backends.redis._cluster import create_cluster

        return create_cluster(settings, options)
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
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call, unused-ignore]
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
