"""Every Lua script of every Redis store runs on a real Redis Cluster and touches one slot."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.crc import key_slot

from nativekit.backends.redis import (
    RedisCache,
    RedisDedupStore,
    RedisReplyStore,
    RedisSagaStore,
    _cache,
    _dedup_scripts,
    _reply_store,
    _saga_scripts,
)
from nativekit.messaging._commands.reply_store import StoredReply
from nativekit.messaging._dedup import FinalState
from nativekit.saga import SagaRecord, SagaStatus
from nativekit.saga._store.model import Transition, Waiting
from nativekit.saga._store.outbox import OutboxEntry

pytestmark = pytest.mark.redis

SCRIPTS = {
    "saga CREATE": _saga_scripts.CREATE,
    "saga WRITE": _saga_scripts.WRITE,
    "saga CLAIM": _saga_scripts.CLAIM,
    "saga RENEW": _saga_scripts.RENEW,
    "saga CLAIM_REPLY": _saga_scripts.CLAIM_REPLY,
    "saga SIGNAL": _saga_scripts.SIGNAL,
    "dedup claim": _dedup_scripts.CLAIM,
    "dedup finish": _dedup_scripts.FINISH,
    "dedup renew": _dedup_scripts.RENEW,
    "dedup release": _dedup_scripts.RELEASE,
    "dedup revive": _dedup_scripts.REVIVE,
    "reply claim": _reply_store._CLAIM,
    "reply finish": _reply_store._FINISH,
    "reply release": _reply_store._RELEASE,
    "reply renew": _reply_store._RENEW,
    "cache release": _cache._RELEASE,
}
NAMES = {hashlib.sha1(text.encode()).hexdigest(): name for name, text in SCRIPTS.items()}


def record_scripts(client: Any) -> list[tuple[str, list[bytes | str]]]:
    """Record (script name, keys) of every EVALSHA the client sends from now on."""
    calls: list[tuple[str, list[bytes | str]]] = []
    original: Callable[..., Awaitable[Any]] = client.evalsha

    async def evalsha(sha: str, numkeys: int, *args: Any) -> Any:
        calls.append((NAMES.get(sha, sha), list(args[:numkeys])))
        return await original(sha, numkeys, *args)

    client.evalsha = evalsha
    return calls


def record(saga_id: str) -> SagaRecord:
    """A fresh RUNNING saga record."""
    return SagaRecord(
        saga_id=saga_id,
        name="place-order",
        definition="d1",
        status=SagaStatus.RUNNING,
        input="{}",
        created_at=0.0,
        updated_at=0.0,
    )


async def saga_scripts(client: Any, unique: str) -> None:
    """Each saga transition script: create, write (status change with outbox), claim,
    renew, claim a reply, claim expired, signal an event."""
    store = RedisSagaStore(client, prefix=f"test:slots:{unique}", shards=8)
    common = {"name": "place-order", "definition": "d1", "lease": 30, "retention": 60}
    for saga_id in ("s1", "s2", "s3"):
        await store.create(record(saga_id), token="t1", lease=30)
    entry = OutboxEntry("e1", "orders.events", "s1", "{}", "OrderPlaced").encode()
    change = Transition(status=SagaStatus.COMPENSATING, fields={"x": "1"}, outbox=[entry])
    await store.write("s1", "t1", change, current=SagaStatus.RUNNING, **common)
    await store.claim("s2", "t2", lease=30, force=True)
    assert await store.renew([("s2", "t2"), ("s3", "t1")], lease=30) == [True, True]
    wait = Waiting("reserve", "forward", 1, "reply-token", 5.0)
    await store.write("s3", "t1", Transition(fields={"wait": wait.encode()}),
                      current=SagaStatus.RUNNING, **common)  # fmt: skip
    claimed = await store.claim_reply("s3", wait, "t3", lease=30, known=["place-order:d1"])
    assert claimed.token == "t3"
    await store.write("s3", "t3", Transition(release=True), current=SagaStatus.RUNNING, **common)
    [recovered] = await store.claim_expired(["place-order:d1"], lambda: "t4", lease=30, limit=5)
    assert recovered.saga_id == "s3"
    await store.signal("s2", "paid", "{}")


async def dedup_scripts(client: Any, unique: str) -> None:
    """Each dedup script, on a batch of keys."""
    store = RedisDedupStore(client, namespace=f"slots-{unique}")
    claims = await store.claim_many(["a", "b", "c"], lease=30)
    assert await store.renew_many(claims, lease=30) == [True, True, True]
    await store.release_many(claims[:1])
    await store.finish_many(claims[1:2], retain=60)
    await store.finish_many(claims[2:], retain=60, state=FinalState.DEAD)
    assert await store.revive("c") is True


async def reply_scripts(client: Any, unique: str) -> None:
    """Each reply-store script."""
    store = RedisReplyStore(client, prefix=f"test:slots:{unique}")
    token = await store.claim("k1", lease=30)
    assert isinstance(token, str)
    assert await store.renew("k1", token, lease=30)
    await store.finish("k1", token, StoredReply(True, "Done", b"{}", None), retain=60)
    other = await store.claim("k2", lease=30)
    assert isinstance(other, str)
    await store.release("k2", other)


async def cache_scripts(client: Any, unique: str) -> None:
    """The cache's lease release."""
    cache = RedisCache(client)
    token = await cache.acquire(f"{unique}:lock", lease=30)
    assert token is not None
    await cache.release(f"{unique}:lock", token)


async def test_every_script_touches_one_slot(cluster_client: Any, unique: str) -> None:
    """Each script of the saga, dedup, reply and cache stores ran on the cluster with keys of
    a single hash slot; the saga shards of one store sit on several nodes."""
    calls = record_scripts(cluster_client)
    for scenario in (saga_scripts, dedup_scripts, reply_scripts, cache_scripts):
        await scenario(cluster_client, unique)
    assert {name for name, _ in calls} == set(SCRIPTS)
    for name, keys in calls:
        slots = {key_slot(k.encode() if isinstance(k, str) else k) for k in keys}
        assert len(slots) == 1, f"{name} touched slots {slots} with keys {keys}"
    saga_keys = [keys[0] for name, keys in calls if name.startswith("saga")]
    nodes = {cluster_client.get_node_from_key(key).name for key in saga_keys}
    assert len(nodes) > 1, "the saga shards all landed on one node: the test proves little"
    async for key in cluster_client.scan_iter(match=f"*{unique}*"):
        await cluster_client.delete(key)
