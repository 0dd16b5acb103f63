"""The backends of one service, chosen by URL: shared clients and the stores built on them.

This is the only place that decides between ``memory://``, Redis, PostgreSQL and Kafka;
capabilities receive the factories below and see only their protocols.
Importing it loads neither redis-py, asyncpg nor aiokafka: each is imported when a
backend that needs it is first built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nativekit.settings import Settings, mask_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from prometheus_client import CollectorRegistry

    from nativekit._health import CheckFunc
    from nativekit._transaction import TransactionFactory
    from nativekit.backends.postgres._client import Database
    from nativekit.backends.postgres._retention import Retention
    from nativekit.cache import Cache
    from nativekit.messaging._commands.reply_store import ReplyStore
    from nativekit.messaging._dedup import DedupStore
    from nativekit.messaging._wire.broker import Broker, Record
    from nativekit.messaging._wire.memory import MemoryBroker
    from nativekit.saga._store.store import SagaStore

_memory_broker: MemoryBroker | None = None
_memory_dedup: dict[str, DedupStore] = {}


def shared_memory_broker() -> MemoryBroker:
    """The process-wide broker behind ``NATIVEKIT_KAFKA_URL=memory://``."""
    global _memory_broker
    if _memory_broker is None:
        from nativekit.messaging._wire.memory import MemoryBroker

        _memory_broker = MemoryBroker()
    return _memory_broker


def shared_memory_dedup(namespace: str) -> DedupStore:
    """The process-wide dedup store of ``namespace`` behind ``NATIVEKIT_REDIS_URL=memory://``."""
    store = _memory_dedup.get(namespace)
    if store is None:
        from nativekit.messaging._dedup import MemoryDedupStore

        store = _memory_dedup[namespace] = MemoryDedupStore()
    return store


class Backends:
    """Shared clients of one service and the stores its capabilities use.

    Args:
        name: the service name (default key prefixes).
        settings: URLs, pools and timeouts.
    """

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self._redis: aioredis.Redis | None = None
        self._database: Database | None = None
        self._retention: Retention | None = None
        #: Set once a capability takes the shared client (sagas, dedup, command replies):
        #: Redis is then needed to be correct, not only to cache.
        self.redis_required = False

    @property
    def uses_redis(self) -> bool:
        """True when ``NATIVEKIT_REDIS_URL`` points at a Redis server."""
        return not self.settings.redis.url.startswith("memory://")

    @property
    def uses_postgres(self) -> bool:
        """True when ``NATIVEKIT_DATABASE_URL`` names a PostgreSQL database: sagas, their
        outbox, consumer dedup and command replies live there instead of Redis."""
        return bool(self.settings.database.url)

    @property
    def database(self) -> Database:
        """The shared PostgreSQL pool (created on first use, closed by :meth:`aclose`)."""
        if self._database is None:
            from nativekit.backends.postgres._client import Database

            self._database = Database(self.settings)
        return self._database

    def transactions(self) -> TransactionFactory | None:
        """Makes the transactions handlers are handed (``ctx.db``, ``Transaction``
        parameters); None without a database backend."""
        if not self.uses_postgres:
            return None
        from nativekit.backends.postgres._transaction import PostgresTransaction

        database = self.database
        return lambda: PostgresTransaction(database)

    def postgres_check(self) -> CheckFunc:
        """A readiness check running ``SELECT 1`` on the shared pool."""
        from nativekit.backends.postgres._health import postgres_check

        return postgres_check(self.database)

    async def start(self) -> None:
        """With PostgreSQL: check (or, when allowed, apply) the schema migrations, and
        start the retention passes."""
        if not self.uses_postgres:
            return
        from nativekit.backends.postgres._health import prepare_schema
        from nativekit.backends.postgres._retention import Retention

        await prepare_schema(self.database, self.name)
        s = self.settings.database
        self._retention = Retention(
            self.database,
            service=self.name,
            interval=s.retention_interval_seconds,
            batch=s.retention_batch,
        )
        await self._retention.start()

    @property
    def uses_kafka(self) -> bool:
        """True when ``NATIVEKIT_KAFKA_URL`` points at Kafka brokers."""
        return self.settings.kafka.url != "memory://"

    @property
    def redis(self) -> aioredis.Redis:
        """The shared Redis client (created on first use, closed by :meth:`aclose`); taking
        it marks Redis as required (see :attr:`redis_required`)."""
        self.redis_required = True
        return self._client()

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            from nativekit.backends.redis._client import create_redis

            self._redis = create_redis(self.settings)
        return self._redis

    def redis_check(self) -> CheckFunc:
        """A readiness check pinging the shared Redis client."""
        from nativekit.backends.redis._client import redis_check

        return redis_check(self._client(), self.settings)

    def broker(self) -> Broker:
        """The broker ``NATIVEKIT_KAFKA_URL`` names: Kafka, or the process-wide memory one."""
        if self.uses_kafka:
            from nativekit.backends.kafka._broker import KafkaBroker

            return KafkaBroker(self.settings)
        return shared_memory_broker()

    async def read_topic(self, topic: str, *, limit: int) -> tuple[list[Record], int]:
        """Up to ``limit`` records of ``topic`` from its start (oldest first) and how many
        it holds; a topic that does not exist yet holds none. For operators' reads."""
        if not self.uses_kafka:
            records = shared_memory_broker().records(topic)
            return records[:limit], len(records)
        from nativekit.backends.kafka._admin import KafkaAdmin, TopicNotFound

        try:
            return await KafkaAdmin(self.settings).read(topic, limit=limit)
        except TopicNotFound:
            return [], 0

    def dedup_store(self, namespace: str, retain: float) -> DedupStore:
        """The consumer dedup store of ``namespace`` (DONE marks kept ``retain`` seconds)."""
        if self.uses_postgres:
            from nativekit.backends.postgres._dedup import PostgresDedupStore

            return PostgresDedupStore(self.database, namespace=namespace, retention=retain)
        if not self.uses_redis:
            return shared_memory_dedup(namespace)
        from nativekit.backends.redis._dedup import RedisDedupStore

        return RedisDedupStore(
            self.redis,
            namespace=namespace,
            retention=retain,
            url_safe=mask_url(self.settings.redis.url),
        )

    def reply_store(self) -> ReplyStore:
        """Where a participant remembers the commands it answered."""
        if self.uses_postgres:
            from nativekit.backends.postgres._reply_store import PostgresReplyStore

            return PostgresReplyStore(self.database, namespace=self.name)
        if not self.uses_redis:
            from nativekit.messaging._commands.reply_store import MemoryReplyStore

            return MemoryReplyStore()
        from nativekit.backends.redis._reply_store import RedisReplyStore

        return RedisReplyStore(self.redis, prefix=f"nk:cmd:{self.name}")

    def saga_store(self) -> SagaStore:
        """The saga store: PostgreSQL per ``NATIVEKIT_DATABASE_URL``, else Redis per
        ``NATIVEKIT_REDIS_URL``, else in memory."""
        if self.uses_postgres:
            from nativekit.backends.postgres._saga_store import PostgresSagaStore

            return PostgresSagaStore(self.database)
        if not self.uses_redis:
            from nativekit.saga._store.memory import MemorySagaStore

            return MemorySagaStore()
        from nativekit.backends.redis._saga_store import RedisSagaStore

        return RedisSagaStore(
            self.redis,
            prefix=self.settings.saga.key_prefix or f"nk:saga:{self.name}",
            shards=self.settings.saga.shards,
        )

    def cache(self, registry: CollectorRegistry | None = None) -> Cache:
        """The cache: Redis (with a near cache when ``NATIVEKIT_CACHE_NEAR_ENABLED``) unless
        ``NATIVEKIT_REDIS_URL`` is memory://; its own client, closed by ``Cache.stop``."""
        from nativekit.cache import Cache, CacheBackend, MemoryCache, NearCache

        settings = self.settings
        prefix = f"nkc:{self.name}"
        near = None
        backend: CacheBackend
        if not self.uses_redis:
            backend = MemoryCache(settings.cache.memory_max_entries)
        else:
            from nativekit.backends.redis import RedisCache

            channel = f"{prefix}:invalidated" if settings.cache.near_enabled else None
            backend = RedisCache.from_settings(settings, channel=channel)
            if settings.cache.near_enabled:
                near = NearCache(
                    max_entries=settings.cache.near_size,
                    max_age=settings.cache.near_max_age_seconds,
                )
        return Cache(
            backend,
            prefix=prefix,
            service=self.name,
            registry=registry,
            max_value_bytes=settings.cache.max_value_bytes,
            breaker_failures=settings.cache.breaker_failures,
            breaker_reset=settings.cache.breaker_reset_seconds,
            lock_lease=settings.cache.lock_lease_seconds,
            near=near,
        )

    async def aclose(self) -> None:
        """Close the shared Redis client and PostgreSQL pool (a later use creates new ones)."""
        if self._retention is not None:
            retention, self._retention = self._retention, None
            await retention.stop()
        if self._database is not None:
            database, self._database = self._database, None
            await database.aclose()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()
