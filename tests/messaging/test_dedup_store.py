"""Contract of DedupStore, run against the memory store, real Redis and real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from nativekit.backends.postgres import Database, PostgresDedupStore
from nativekit.backends.redis._dedup import RedisDedupStore
from nativekit.errors import BackendUnavailable, ConfigError
from nativekit.messaging._dedup import ClaimStatus, DedupStore, FinalState, MemoryDedupStore
from nativekit.settings import Settings


class DedupStoreContract:
    """Behaviour every DedupStore must have."""

    async def test_first_claim_owns_the_key_with_a_token(self, store: DedupStore) -> None:
        """A free key is CLAIMED with a positive fencing token."""
        [claim] = await store.claim_many(["a"], lease=5)
        assert claim.status is ClaimStatus.CLAIMED
        assert claim.token > 0

    async def test_claim_of_a_held_key_is_busy(self, store: DedupStore) -> None:
        """A key claimed by someone else with a live lease answers BUSY."""
        await store.claim_many(["a"], lease=5)
        [again] = await store.claim_many(["a"], lease=5)
        assert again.status is ClaimStatus.BUSY

    async def test_second_claim_of_a_finished_key_is_a_duplicate(self, store: DedupStore) -> None:
        """After finish_many the key reads DONE."""
        claims = await store.claim_many(["a", "b"], lease=5)
        assert await store.finish_many(claims, retain=60) == [True, True]
        again = await store.claim_many(["a", "b", "c"], lease=5)
        assert [c.status for c in again] == [
            ClaimStatus.DONE,
            ClaimStatus.DONE,
            ClaimStatus.CLAIMED,
        ]

    async def test_states_and_revive_serve_operators(self, store: Any) -> None:
        """states() names each key's mark; revive() drops only a DEAD one, which is then
        claimed like a new message."""
        claims = await store.claim_many(["a", "b", "c"], lease=5)
        await store.finish_many(claims[:1], retain=60, state=FinalState.DEAD)
        await store.finish_many(claims[1:2], retain=60)
        assert await store.states(["a", "b", "c", "d"]) == ["DEAD", "DONE", "IN_PROGRESS", None]
        assert [await store.revive(k) for k in ("b", "c", "d", "a")] == [False] * 3 + [True]
        assert await store.states(["a", "b", "c"]) == [None, "DONE", "IN_PROGRESS"]
        [again] = await store.claim_many(["a"], lease=5)
        assert again.status is ClaimStatus.CLAIMED
        assert await store.revive("a") is False  # claimed again: not DEAD any more

    async def test_dead_state_is_kept(self, store: DedupStore) -> None:
        """A key finished as DEAD reads DEAD."""
        claims = await store.claim_many(["a"], lease=5)
        await store.finish_many(claims, retain=60, state=FinalState.DEAD)
        [again] = await store.claim_many(["a"], lease=5)
        assert again.status is ClaimStatus.DEAD

    async def test_expired_lease_is_taken_over_with_a_larger_token(self, store: DedupStore) -> None:
        """When the owner's lease runs out, the next claim wins with a larger token."""
        [first] = await store.claim_many(["a"], lease=0.05)
        await asyncio.sleep(0.12)
        [second] = await store.claim_many(["a"], lease=5)
        assert second.status is ClaimStatus.CLAIMED
        assert second.token > first.token

    async def test_fenced_owner_cannot_finish(self, store: DedupStore) -> None:
        """An owner whose lease was taken over gets False from finish_many."""
        [first] = await store.claim_many(["a"], lease=0.05)
        await asyncio.sleep(0.12)
        [second] = await store.claim_many(["a"], lease=5)
        assert await store.finish_many([first], retain=60) == [False]
        assert await store.finish_many([second], retain=60) == [True]

    async def test_owner_whose_lease_expired_unclaimed_still_finishes(
        self, store: DedupStore
    ) -> None:
        """A slow owner marks DONE if nobody took the key over meanwhile."""
        [claim] = await store.claim_many(["a"], lease=0.05)
        await asyncio.sleep(0.12)
        assert await store.finish_many([claim], retain=60) == [True]
        [again] = await store.claim_many(["a"], lease=5)
        assert again.status is ClaimStatus.DONE

    async def test_renew_keeps_the_lease(self, store: DedupStore) -> None:
        """A renewed lease outlives its first expiry."""
        # renewed at once and checked well past the first lease: on a loaded machine a
        # round trip can take longer than a short lease's remaining time
        [claim] = await store.claim_many(["a"], lease=0.5)
        assert await store.renew_many([claim], lease=3) == [True]
        await asyncio.sleep(0.7)
        [other] = await store.claim_many(["a"], lease=5)
        assert other.status is ClaimStatus.BUSY

    async def test_release_frees_the_key(self, store: DedupStore) -> None:
        """A released claim can be claimed again at once."""
        [claim] = await store.claim_many(["a"], lease=5)
        await store.release_many([claim])
        [again] = await store.claim_many(["a"], lease=5)
        assert again.status is ClaimStatus.CLAIMED

    async def test_done_mark_expires_after_retention(self, store: DedupStore) -> None:
        """DONE is kept for the retention only."""
        claims = await store.claim_many(["a"], lease=5)
        await store.finish_many(claims, retain=0.05)
        await asyncio.sleep(0.12)
        [again] = await store.claim_many(["a"], lease=5)
        assert again.status is ClaimStatus.CLAIMED

    async def test_same_key_twice_in_one_batch(self, store: DedupStore) -> None:
        """The second copy of a key inside one batch is BUSY, not a second claim."""
        claims = await store.claim_many(["a", "a"], lease=5)
        assert [c.status for c in claims] == [ClaimStatus.CLAIMED, ClaimStatus.BUSY]

    async def test_keys_with_separators_stay_distinct(self, store: DedupStore) -> None:
        """Keys with newlines, percent signs or nothing at all are kept apart."""
        odd = ["a\nb", "a%0Ab", "a", "b", "", "%", "%25"]
        claims = await store.claim_many(odd, lease=5)
        assert all(c.status is ClaimStatus.CLAIMED for c in claims)
        assert await store.finish_many(claims, retain=60) == [True] * len(odd)
        again = await store.claim_many(odd, lease=5)
        assert all(c.status is ClaimStatus.DONE for c in again)

    async def test_empty_batches_cost_nothing(self, store: DedupStore) -> None:
        """Empty batches return empty answers."""
        assert await store.claim_many([], lease=5) == []
        assert await store.finish_many([], retain=5) == []
        assert await store.renew_many([], lease=5) == []
        await store.release_many([])
        await store.ping()


class TestMemoryDedupStore(DedupStoreContract):
    """The contract on the in-process store."""

    @pytest.fixture
    def store(self) -> MemoryDedupStore:
        """A fresh memory store."""
        return MemoryDedupStore()

    async def test_switched_off_store_raises(self, store: MemoryDedupStore) -> None:
        """A store marked unavailable raises BackendUnavailable (fault injection)."""
        store.available = False
        with pytest.raises(BackendUnavailable):
            await store.claim_many(["a"], lease=1)


@pytest.mark.postgres
class TestPostgresDedupStore(DedupStoreContract):
    """The contract on real PostgreSQL."""

    @pytest.fixture
    def store(self, pg_database: Database, unique: str) -> PostgresDedupStore:
        """A store under a unique namespace in a schema of this test's own."""
        return PostgresDedupStore(pg_database, namespace=f"test-{unique}")

    async def test_retention_deletes_expired_marks_in_batches(
        self, store: PostgresDedupStore
    ) -> None:
        """Expired marks are deleted batch by batch; live ones stay."""
        claims = await store.claim_many([f"k{i}" for i in range(25)], lease=5)
        await store.finish_many(claims[:20], retain=0.05)
        await store.finish_many(claims[20:], retain=60)
        await asyncio.sleep(0.12)
        assert [await store.delete_expired(8) for _ in range(4)] == [8, 8, 4, 0]
        assert await store.states(["k0", "k24"]) == [None, "DONE"]

    async def test_unreachable_server_is_backend_unavailable(self, unique: str) -> None:
        """A store on a closed port raises BackendUnavailable naming the operation."""
        database = Database(Settings(database={"url": "postgresql://u@127.0.0.1:1/x"}))
        store = PostgresDedupStore(database, namespace=unique)
        with pytest.raises(BackendUnavailable, match="claim messages"):
            await store.claim_many(["a"], lease=1)
        with pytest.raises(BackendUnavailable):
            await store.ping()


@pytest.mark.postgres
class TestPostgresDedupStoreWithRetention(DedupStoreContract):
    """The contract on real PostgreSQL with a store told its consumer's retention (claims
    then cover it, and finishes with it keep their expiry: HOT updates)."""

    @pytest.fixture
    def store(self, pg_database: Database, unique: str) -> PostgresDedupStore:
        """A store whose retention is that of most finishes below."""
        return PostgresDedupStore(pg_database, namespace=f"test-{unique}", retention=60)


class RetriedRedisClaims:
    """Redis-only: a script call sent twice, as redis-py's retry does when the first run
    went through but its answer was lost with the connection."""

    async def test_a_retried_claim_gets_its_own_claims_back(
        self, store: RedisDedupStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A claim run twice reports CLAIMED with the first run's tokens, not BUSY; those
        tokens finish the keys."""
        evalsha = store.client.evalsha

        async def twice(*args: Any) -> Any:
            await evalsha(*args)
            return await evalsha(*args)

        monkeypatch.setattr(store.client, "evalsha", twice)
        claims = await store.claim_many(["r1", "r2", "r1", "r3"], lease=5)
        monkeypatch.undo()
        assert [c.status for c in claims] == [ClaimStatus.CLAIMED] * 2 + [ClaimStatus.BUSY] + [
            ClaimStatus.CLAIMED
        ]
        owned = [c for c in claims if c.status is ClaimStatus.CLAIMED]
        assert await store.finish_many(owned, retain=60) == [True] * 3
        again = await store.claim_many(["r1", "r2", "r3"], lease=5)
        assert [c.status for c in again] == [ClaimStatus.DONE] * 3


@pytest.mark.redis
class TestRedisDedupStore(DedupStoreContract, RetriedRedisClaims):
    """The contract on real Redis."""

    @pytest.fixture
    async def store(self, redis_url: str, unique: str) -> AsyncIterator[RedisDedupStore]:
        """A store under a unique namespace on the real Redis."""
        client = aioredis.Redis.from_url(redis_url)
        yield RedisDedupStore(client, namespace=f"test-{unique}")
        keys = [k async for k in client.scan_iter(match=f"nk:dedup:{{test-{unique}}}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    async def test_one_batch_is_one_round_trip(self, store: RedisDedupStore) -> None:
        """Claiming and finishing 200 keys costs one command each."""
        calls = 0
        original = store.client.execute_command

        async def counting(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            return await original(*args, **kwargs)

        await store.claim_many(["warm"], lease=5)  # loads the script
        store.client.execute_command = counting  # type: ignore[method-assign]
        claims = await store.claim_many([f"k{i}" for i in range(200)], lease=5)
        await store.finish_many(claims, retain=60)
        assert calls == 2

    async def test_unreachable_redis_is_backend_unavailable(self, unique: str) -> None:
        """A store on a closed port raises BackendUnavailable naming the operation."""
        client = aioredis.Redis(
            host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )
        store = RedisDedupStore(client, namespace=unique, url_safe="redis://127.0.0.1:1")
        with pytest.raises(BackendUnavailable, match="claim"):
            await store.claim_many(["a"], lease=1)
        with pytest.raises(BackendUnavailable):
            await store.ping()
        await client.aclose()


@pytest.mark.redis
class TestRedisLayout:
    """How the Redis store keeps records: bucketed hashes with their own deadlines."""

    @pytest.fixture
    async def client(self, redis_url: str, unique: str) -> AsyncIterator[aioredis.Redis]:
        """A client; the namespace's keys are deleted afterwards."""
        client = aioredis.Redis.from_url(redis_url)
        yield client
        keys = [k async for k in client.scan_iter(match=f"nk:dedup:{{{unique}}}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    async def test_records_share_one_expiring_hash(
        self, client: aioredis.Redis, unique: str
    ) -> None:
        """A batch adds fields to the current bucket, which expires after the retention,
        and no key of its own per message (the claim's answer is kept for its lease)."""
        store = RedisDedupStore(client, namespace=unique, retention=3600, bucket_seconds=600)
        claims = await store.claim_many([f"k{i}" for i in range(50)], lease=5)
        await store.finish_many(claims, retain=3600)
        keys = sorted([k async for k in client.scan_iter(match=f"nk:dedup:{{{unique}}}:*")])
        [memo] = [k for k in keys if k.startswith(f"nk:dedup:{{{unique}}}:r:".encode())]
        [bucket] = [k for k in keys if k not in (store.fence_key.encode(), memo)]
        assert len(keys) == 3
        assert 0 < await client.pttl(memo) <= 5000  # the claim's lease
        assert await client.hlen(bucket) == 50
        ttl = await client.pttl(bucket)
        assert 3600_000 <= ttl <= 4200_000 + 1000  # the retention plus at most one bucket

    async def test_done_in_an_older_bucket_is_found_until_its_deadline(
        self, client: aioredis.Redis, unique: str
    ) -> None:
        """With buckets of 0.1 s and a retention of 0.6 s, a DONE mark written several
        buckets ago is still a duplicate, and not after its retention."""
        store = RedisDedupStore(client, namespace=unique, retention=0.6, bucket_seconds=0.1)
        claims = await store.claim_many(["a"], lease=5)
        assert await store.finish_many(claims, retain=0.6) == [True]
        await asyncio.sleep(0.35)
        assert [c.status for c in await store.claim_many(["a"], lease=5)] == [ClaimStatus.DONE]
        assert await store.states(["a", "b"]) == ["DONE", None]
        await asyncio.sleep(0.4)
        [again] = await store.claim_many(["a"], lease=5)
        assert again.status is ClaimStatus.CLAIMED

    async def test_renewed_then_released_claim_is_free_at_once(
        self, client: aioredis.Redis, unique: str
    ) -> None:
        """A renewal written into a newer bucket leaves the old copy behind; release
        drops both, so the key is claimable right away."""
        store = RedisDedupStore(client, namespace=unique, retention=5, bucket_seconds=0.1)
        [claim] = await store.claim_many(["a"], lease=5)
        await asyncio.sleep(0.15)
        assert await store.renew_many([claim], lease=5) == [True]
        assert await store.states(["a"]) == ["IN_PROGRESS"]
        await store.release_many([claim])
        assert await store.states(["a"]) == [None]
        [again] = await store.claim_many(["a"], lease=5)
        assert again.status is ClaimStatus.CLAIMED
        assert again.token > claim.token

    async def test_retain_beyond_the_store_retention_is_refused(
        self, client: aioredis.Redis, unique: str
    ) -> None:
        """A DONE mark the lookups would not reach is a configuration error."""
        store = RedisDedupStore(client, namespace=unique, retention=60)
        claims = await store.claim_many(["a"], lease=5)
        with pytest.raises(ConfigError, match="retention"):
            await store.finish_many(claims, retain=61)


@pytest.mark.redis
class TestClusterDedupStore(DedupStoreContract, RetriedRedisClaims):
    """The contract on a real 3-master Redis Cluster."""

    @pytest.fixture
    async def store(self, cluster_client: Any, unique: str) -> AsyncIterator[RedisDedupStore]:
        """A store under a unique namespace on the cluster."""
        yield RedisDedupStore(cluster_client, namespace=f"test-{unique}")
        async for key in cluster_client.scan_iter(match=f"nk:dedup:{{test-{unique}}}:*"):
            await cluster_client.delete(key)
