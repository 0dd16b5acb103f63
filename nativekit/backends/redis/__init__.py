"""The Redis backend (redis-py asyncio): the client and every store built on it.

Each store implements a nativekit protocol (``SagaStore``, ``DedupStore``,
``ReplyStore``, ``CacheBackend``) and translates redis-py errors into nativekit
errors; its Lua scripts live next to it. Importing this package imports redis.
"""

from nativekit.backends.redis._cache import RedisCache
from nativekit.backends.redis._client import create_redis, redis_check
from nativekit.backends.redis._dedup import RedisDedupStore
from nativekit.backends.redis._outbox import RedisOutbox
from nativekit.backends.redis._reply_store import RedisReplyStore
from nativekit.backends.redis._saga_store import RedisSagaStore

__all__ = [
    "create_redis",
    "redis_check",
    "RedisCache",
    "RedisDedupStore",
    "RedisOutbox",
    "RedisReplyStore",
    "RedisSagaStore",
]
