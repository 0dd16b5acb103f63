"""Reply store contract, on memory, real Redis and real PostgreSQL: claim, busy, answered,
lost lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from nativekit.backends.postgres import Database, PostgresReplyStore
from nativekit.backends.redis._reply_store import RedisReplyStore
from nativekit.messaging._commands.reply_store import MemoryReplyStore, StoredReply

REPLY = StoredReply(True, "StockReserved", b'{"reservation_id":"r-1"}', None)


class ReplyStoreContract:
    """Behaviour every reply store has."""

    async def test_first_claim_owns_the_key_and_a_second_is_busy(self, store: Any) -> None:
        """A claimed key is busy for everyone else until finished or released."""
        token = await store.claim("k1", lease=5)
        assert isinstance(token, str)
        assert await store.claim("k1", lease=5) is None
        await store.release("k1", token)
        assert isinstance(await store.claim("k1", lease=5), str)

    async def test_an_answered_key_returns_the_stored_reply(self, store: Any) -> None:
        """After finish, a claim gets the identical reply (duplicates are answered, not run)."""
        token = await store.claim("k2", lease=5)
        assert await store.finish("k2", token, REPLY, retain=60)
        assert await store.claim("k2", lease=5) == REPLY

    async def test_finishing_again_with_the_same_reply_succeeds(self, store: Any) -> None:
        """A retried finish whose first call went through is no lost lease; another reply
        cannot replace the stored one."""
        token = await store.claim("k5", lease=5)
        assert await store.finish("k5", token, REPLY, retain=60)
        assert await store.finish("k5", token, REPLY, retain=60)
        other = StoredReply(False, "", b"", "rejected")
        assert not await store.finish("k5", token, other, retain=60)
        assert await store.claim("k5", lease=5) == REPLY

    async def test_a_stale_owner_cannot_overwrite(self, store: Any) -> None:
        """Only the current owner's token (or nobody's) may store the reply."""
        assert isinstance(await store.claim("k3", lease=5), str)
        failed = StoredReply(False, "", b"", "rejected")
        assert not await store.finish("k3", "not-the-token", failed, retain=60)
        await store.release("k3", "not-the-token")  # not held by it: no effect
        assert await store.claim("k3", lease=5) is None

    async def test_renewal_extends_only_the_owners_hold(self, store: Any) -> None:
        """The owner's renewal keeps the key held past its first lease; a stranger's does
        nothing, and an answered key cannot be renewed."""
        token = await store.claim("k4", lease=0.2)
        assert not await store.renew("k4", "not-the-token", lease=5)
        assert await store.renew("k4", token, lease=5)
        await asyncio.sleep(0.3)  # past the first lease
        assert await store.claim("k4", lease=5) is None  # still held
        assert await store.finish("k4", token, REPLY, retain=60)
        assert not await store.renew("k4", token, lease=5)

    async def test_concurrent_calls_each_get_their_own_answer(self, store: Any) -> None:
        """Claims and finishes made at once (a fetched batch of commands) each answer for
        their own key: one owner per key, busy for the second claimant, replies kept apart."""
        keys = [f"batch-{i}" for i in range(20)]
        first = await asyncio.gather(*(store.claim(k, lease=5) for k in keys))
        again = await asyncio.gather(*(store.claim(k, lease=5) for k in keys))
        assert all(isinstance(t, str) for t in first) and len(set(first)) == len(keys)
        assert again == [None] * len(keys)
        replies = [StoredReply(True, "R", f'{{"n":{i}}}'.encode(), None) for i in range(20)]
        done = await asyncio.gather(
            *(
                store.finish(k, t, r, retain=60)
                for k, t, r in zip(keys, first, replies, strict=True)
            )
        )
        assert done == [True] * len(keys)
        assert await asyncio.gather(*(store.claim(k, lease=5) for k in keys)) == replies


class RetriedRedisCalls:
    """Redis-only: every script call is sent twice, as redis-py's retry does when the
    first run went through but its answer was lost with the connection."""

    async def test_a_retried_claim_recognises_its_own_earlier_claim(
        self, store: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A claim run twice returns its token (not busy); the key is held by that token."""
        evalsha = store.batcher.evalsha

        async def twice(script: Any, keys: list[Any], args: list[Any]) -> Any:
            await evalsha(script, keys, args)
            return await evalsha(script, keys, args)

        monkeypatch.setattr(store.batcher, "evalsha", twice)
        token = await store.claim("retried", lease=5)
        assert isinstance(token, str)
        assert await store.finish("retried", token, REPLY, retain=60)
        monkeypatch.undo()
        assert await store.claim("retried", lease=5) == REPLY


class TestMemoryReplyStore(ReplyStoreContract):
    @pytest.fixture
    def store(self) -> MemoryReplyStore:
        """A fresh memory store."""
        return MemoryReplyStore()


@pytest.mark.redis
class TestRedisReplyStore(ReplyStoreContract, RetriedRedisCalls):
    @pytest.fixture
    async def store(self, redis_url: str, unique: str) -> AsyncIterator[RedisReplyStore]:
        """A Redis store under a unique prefix; keys removed afterwards."""
        client = aioredis.Redis.from_url(redis_url)
        yield RedisReplyStore(client, prefix=f"test:replies:{unique}")
        keys = [k async for k in client.scan_iter(match=f"test:replies:{unique}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.redis
class TestClusterReplyStore(ReplyStoreContract, RetriedRedisCalls):
    @pytest.fixture
    async def store(self, cluster_client: Any, unique: str) -> AsyncIterator[RedisReplyStore]:
        """A Redis store on a real 3-master cluster; keys removed afterwards."""
        yield RedisReplyStore(cluster_client, prefix=f"test:replies:{unique}")
        async for key in cluster_client.scan_iter(match=f"test:replies:{unique}:*"):
            await cluster_client.delete(key)



@pytest.mark.postgres
class TestPostgresReplyStore(ReplyStoreContract):
    @pytest.fixture
    def store(self, pg_database: Database) -> PostgresReplyStore:
        """A store in a schema of this test's own."""
        return PostgresReplyStore(pg_database, namespace="svc")
