"""The Redis cache backend (redis-py asyncio): single-GET hits, expiring tag indexes.

* A hit is one ``GET``; nothing else is read on the request path.
* A tag is a sorted set of ``key -> expiry``. Adding a key drops members that
  already expired and stretches the set's TTL to its longest-lived member
  (``PEXPIRE NX`` then ``GT``), so an index never outlives or outgrows its live
  entries. Invalidation reads the members and unlinks them: no ``KEYS``/``SCAN``.
* Every command touches one key (pipelines, no multi-key scripts), so the
  layout works on Redis Cluster.
* Deletions are published on a channel for near caches in other replicas; on
  Redis Cluster a sharded channel (``SPUBLISH``/``SSUBSCRIBE``), served by the
  channel's shard alone.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from pydantic_core import from_json, to_json
from redis.asyncio.client import PubSub

from nativekit.backends.redis._client import create_redis
from nativekit.backends.redis._cluster import is_cluster
from nativekit.errors import BackendUnavailable
from nativekit.settings import Settings, mask_url

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_ERRORS = (redis.exceptions.RedisError, OSError, TimeoutError)


class RedisCache:
    """Cache entries in Redis.

    Args:
        client: a redis-py asyncio client (``decode_responses=False``).
        channel: pub/sub channel announcing deletions to near caches; None: none.
        owns_client: close ``client`` in :meth:`aclose`.
        where: how to name the server in error messages (no password).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        channel: str | None = None,
        owns_client: bool = False,
        where: str = "Redis",
    ) -> None:
        self.client = client
        self.channel = channel
        self.owns_client = owns_client
        self.where = where
        self._sharded = is_cluster(client)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_settings(cls, settings: Settings, *, channel: str | None = None) -> RedisCache:
        """A cache with its own client: ``NATIVEKIT_CACHE_TIMEOUT_SECONDS`` bounds every call."""
        short = settings.model_copy(
            update={
                "operation_timeout_seconds": settings.cache.timeout_seconds,
                "connect_timeout_seconds": settings.cache.timeout_seconds,
            }
        )
        return cls(
            create_redis(short),
            channel=channel,
            owns_client=True,
            where=f"Redis at {mask_url(settings.redis.url)}",
        )

    def _unavailable(self, op: str, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"{self.where} failed {op} for the cache: {type(exc).__name__}: {exc}. "
            "Is NATIVEKIT_REDIS_URL right and the server up?"
        )

    async def get(self, key: str) -> bytes | None:
        """The entry at ``key``, or None (one ``GET``)."""
        try:
            value: Any = await self.client.get(key)
        except _ERRORS as exc:
            raise self._unavailable("GET", exc) from exc
        return value  # type: ignore[no-any-return]

    async def set(self, key: str, value: bytes, *, ttl: float, tags: Sequence[str] = ()) -> None:
        """``SET`` with expiry, plus the tag index updates, in one round trip."""
        ms = max(1, int(ttl * 1000))
        try:
            if not tags:
                await self.client.set(key, value, px=ms)
                return
            now = int(time.time() * 1000)
            pipe = self.client.pipeline(transaction=False)
            pipe.set(key, value, px=ms)
            for tag in tags:
                pipe.zadd(tag, {key: now + ms})
                pipe.zremrangebyscore(tag, "-inf", now)
                pipe.pexpire(tag, ms, nx=True)
                pipe.pexpire(tag, ms, gt=True)
            await pipe.execute()
        except _ERRORS as exc:
            raise self._unavailable("SET", exc) from exc

    async def delete(self, keys: Sequence[str]) -> int:
        """``UNLINK`` ``keys`` and announce them on the channel."""
        try:
            return len(await self._unlink(keys, []))
        except _ERRORS as exc:
            raise self._unavailable("UNLINK", exc) from exc

    async def invalidate_tags(self, tags: Sequence[str]) -> list[str]:
        """Read each tag's members, unlink them and remove them from the index."""
        if not tags:
            return []
        try:
            pipe = self.client.pipeline(transaction=False)
            for tag in tags:
                pipe.zrange(tag, 0, -1)
            members: list[list[bytes]] = await pipe.execute()
            keys = sorted({m.decode() for found in members for m in found})
            # ZREM, not DEL: keys tagged since the ZRANGE stay indexed
            cleanup = [(tag, found) for tag, found in zip(tags, members, strict=True) if found]
            return await self._unlink(keys, cleanup)
        except _ERRORS as exc:
            raise self._unavailable("ZRANGE/UNLINK", exc) from exc

    async def _unlink(
        self, keys: Sequence[str], cleanup: list[tuple[str, list[bytes]]]
    ) -> list[str]:
        """Unlink ``keys`` one command each (cluster-safe); the keys that existed."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            # queued as a plain command: a cluster pipeline's own unlink() is a coroutine
            pipe.execute_command("UNLINK", key)
        for tag, found in cleanup:
            pipe.zrem(tag, *found)
        if self.channel and self._sharded:
            pipe.spublish(self.channel, to_json(list(keys)))
        elif self.channel:
            pipe.publish(self.channel, to_json(list(keys)))
        results = await pipe.execute()
        return [key for key, removed in zip(keys, results, strict=False) if removed]

    async def acquire(self, key: str, *, lease: float) -> str | None:
        """``SET key token NX PX lease``: the token if taken."""
        token = uuid.uuid4().hex
        try:
            taken = await self.client.set(key, token, nx=True, px=max(1, int(lease * 1000)))
        except _ERRORS as exc:
            raise self._unavailable("SET NX", exc) from exc
        return token if taken else None

    async def release(self, key: str, token: str) -> None:
        """Delete lease ``key`` only if ``token`` still holds it."""
        try:
            await self._release(keys=[key], args=[token])
        except _ERRORS as exc:
            raise self._unavailable("EVALSHA", exc) from exc

    async def ping(self) -> None:
        """``PING``."""
        try:
            await self.client.ping()
        except _ERRORS as exc:
            raise self._unavailable("PING", exc) from exc

    async def aclose(self) -> None:
        """Close the client if this cache created it."""
        if self.owns_client:
            await self.client.aclose()

    async def listen(
        self, on_keys: Callable[[list[str]], None], on_connected: Callable[[], None]
    ) -> None:
        """Deliver announced deletions to ``on_keys`` until cancelled.

        ``on_connected`` runs on every (re)connection of the subscription, since
        announcements made while it was down are lost.

        Raises:
            BackendUnavailable: the subscription was lost and could not be re-established.
        """
        if self.channel is None:
            raise ValueError("RedisCache.listen needs a channel")
        if self._sharded:
            await self._listen_sharded(self.channel, on_keys, on_connected)
            return
        pubsub = _PubSub(self.client.connection_pool, ignore_subscribe_messages=True)
        pubsub.on_connected = on_connected
        try:
            await pubsub.subscribe(self.channel)
            on_connected()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    on_keys([str(k) for k in from_json(message["data"])])
        except _ERRORS as exc:
            raise self._unavailable("SUBSCRIBE", exc) from exc
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def _listen_sharded(
        self,
        channel: str,
        on_keys: Callable[[list[str]], None],
        on_connected: Callable[[], None],
    ) -> None:
        """:meth:`listen` on a cluster: every ``ssubscribe`` confirmation is a
        (re)subscription (redis-py re-subscribes after a reconnect or a slot move),
        so announcements may have been missed before it."""
        cluster: Any = self.client  # a RedisCluster: its pubsub() is a ClusterPubSub
        pubsub = cluster.pubsub()
        try:
            await cluster.initialize()  # the slot map the subscription is routed by
            await pubsub.ssubscribe(channel)
            while True:
                message = await pubsub.get_sharded_message(timeout=1.0)
                if message is None:
                    continue
                kind = message.get("type")
                kind = kind.decode() if isinstance(kind, bytes) else kind
                if kind == "ssubscribe":
                    on_connected()
                elif kind == "smessage":
                    on_keys([str(k) for k in from_json(message["data"])])
        except _ERRORS as exc:
            raise self._unavailable("SSUBSCRIBE", exc) from exc
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


class _PubSub(PubSub):
    """A PubSub that reports reconnections (redis-py re-subscribes silently)."""

    on_connected: Callable[[], None] = staticmethod(lambda: None)

    async def on_connect(self, connection: Any) -> None:
        self.on_connected()
        await super().on_connect(connection)
