"""``RedisReplyStore``: answered commands in Redis, one key per idempotency key."""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from nativekit.backends.redis._batching import CommandBatcher
from nativekit.backends.redis._client import UNAVAILABLE_ERRORS
from nativekit.backends.redis._cluster import is_cluster
from nativekit.errors import BackendUnavailable
from nativekit.messaging._commands.reply_store import StoredReply

# Values: "P:<token>" while a worker holds the key (PX = lease), "D:<reply json>" when answered.
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'P:' .. ARGV[1], 'PX', ARGV[2])
  return 'C'
end
return v
"""
# Finishing again with the same reply answers 1: a retried call whose first run went
# through (its answer lost with the connection) must not look like a lost lease.
_FINISH = """
local v = redis.call('GET', KEYS[1])
if v == 'D:' .. ARGV[2] then return 1 end
if v and v ~= 'P:' .. ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'D:' .. ARGV[2], 'PX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == 'P:' .. ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) ~= 'P:' .. ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, redis.exceptions.RedisError)


class RedisReplyStore:
    """:class:`~nativekit.messaging._commands.reply_store.ReplyStore` on Redis (single-key scripts).

    The calls of concurrent commands made in one event-loop turn (the claims of a
    fetched batch, then their replies) go to Redis as one pipeline
    (:class:`~nativekit.backends.redis._batching.CommandBatcher`), except on Redis
    Cluster.

    Args:
        client: a redis-py asyncio client (not closed here).
        prefix: key prefix, one per service.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.batcher = CommandBatcher(client, batching=not is_cluster(client))
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    async def _call(self, script: Any, key: str, args: list[Any], op: str) -> Any:
        try:
            return await self.batcher.evalsha(script, [self._key(key)], args)
        except _ERRORS as exc:
            raise BackendUnavailable(f"Redis reply store failed {op}: {exc}") from exc

    async def claim(self, key: str, *, lease: float) -> str | StoredReply | None:
        """A token, the stored reply, or None while another worker holds the key."""
        token = uuid.uuid4().hex
        raw = await self._call(self._claim, key, [token, int(lease * 1000)], "claim")
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        # "P:<our token>": a retried call whose first run claimed the key (answer lost)
        if value in ("C", f"P:{token}"):
            return token
        if value.startswith("D:"):
            return StoredReply.decode(value[2:])
        return None

    async def finish(self, key: str, token: str, reply: StoredReply, *, retain: float) -> bool:
        """Store the reply unless another worker took the key over."""
        args = [token, reply.encode(), int(retain * 1000)]
        return bool(await self._call(self._finish, key, args, "finish"))

    async def release(self, key: str, token: str) -> None:
        """Drop the key if ``token`` holds it."""
        await self._call(self._release, key, [token], "release")

    async def renew(self, key: str, token: str, *, lease: float) -> bool:
        """Extend the hold of ``token`` on ``key`` (False if it lost it)."""
        return bool(await self._call(self._renew, key, [token, int(lease * 1000)], "renew"))
