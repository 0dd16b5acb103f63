"""``RedisSagaStore``: saga state in Redis hashes, indexes in sorted sets, Lua transitions.

Layout (``P`` = key prefix, ``S`` = shard 00..N-1 chosen by a hash of the saga id)::

    {P:S}:r:<saga_id>            hash: the record (fields of SagaRecord, token, lease)
    {P:S}:leases                 zset: active saga ids by lease expiry (ms)
    {P:S}:live                   hash: "<name>:<definition>" -> active instance count
    {P:S}:st:<STATUS>            zset: saga ids by time they entered STATUS (ms)
    {P:S}:sn:<STATUS>:<name>     zset: the same, per saga name

All keys of a shard share the hash tag ``{P:S}``, so a transition (record and
its index entries) is one single-slot Lua script on Redis Cluster as on one
node. Listing, recovery and the definition check read every shard (pipelined).
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from collections.abc import Callable, Collection, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from nativekit.backends.redis import _saga_scripts as redis_scripts
from nativekit.backends.redis._batching import CommandBatcher
from nativekit.backends.redis._client import UNAVAILABLE_ERRORS
from nativekit.backends.redis._cluster import is_cluster
from nativekit.backends.redis._cluster import pool_size as redis_pool_size
from nativekit.backends.redis._outbox import RedisOutbox
from nativekit.backends.redis._saga_codec import _blob, _fields, _text, _translated, _unavailable
from nativekit.errors import ConfigError
from nativekit.saga._errors import LeaseLost, SagaNotFound, SagaStateError, UnknownSaga
from nativekit.saga._store.model import Page, SagaRecord, SagaStatus, Transition, Waiting
from nativekit.saga._store.store import (
    UNFINISHED,
    decode_cursor,
    definition_key,
    encode_cursor,
    refused_event,
)

_ALL = tuple(SagaStatus)


class RedisSagaStore:
    """Saga store on Redis (single node, Sentinel or Cluster via the client you pass).

    Args:
        client: a redis-py asyncio client (the service's ``svc.redis``); not closed here.
        prefix: key prefix; use one per environment sharing a Redis.
        shards: number of hash-tag shards; fixed for the life of the data.
    """

    def __init__(
        self, client: aioredis.Redis, *, prefix: str = "nk:saga", shards: int = 16
    ) -> None:
        if not 1 <= shards <= 1024:
            raise ConfigError(f"saga shards must be between 1 and 1024, got {shards}.")
        self.client = client
        # redis-py's default pool raises instead of waiting when every connection is busy;
        # queue here instead, so a burst of sagas waits for a connection rather than failing.
        pool_size = redis_pool_size(client)
        self._gate = asyncio.Semaphore(max(1, min(pool_size - 4, pool_size)))
        self.prefix = prefix
        self.shards = shards
        self._cluster = is_cluster(client)
        #: transitions of concurrent runs in one loop turn share a round trip
        self.batcher = CommandBatcher(client, batching=not self._cluster)
        self._tags = [f"{{{prefix}:{shard:02d}}}" for shard in range(shards)]
        self._create = client.register_script(redis_scripts.CREATE)
        self._write = client.register_script(redis_scripts.WRITE)
        self._claim = client.register_script(redis_scripts.CLAIM)
        self._renew = client.register_script(redis_scripts.RENEW)
        self._claim_reply = client.register_script(redis_scripts.CLAIM_REPLY)
        self._signal = client.register_script(redis_scripts.SIGNAL)

    # -- keys -------------------------------------------------------------------------

    def _tag(self, shard: int) -> str:
        return self._tags[shard]

    def _shard(self, saga_id: str) -> str:
        return self._tag(zlib.crc32(saga_id.encode()) % self.shards)

    def _lease_keys(self, saga_id: str) -> list[str]:
        return [self._record_key(saga_id), f"{self._shard(saga_id)}:leases"]

    def _record_key(self, saga_id: str) -> str:
        return f"{self._shard(saga_id)}:r:{saga_id}"

    @staticmethod
    def _index(tag: str, status: SagaStatus | str, name: str | None = None) -> str:
        return f"{tag}:st:{status}" if name is None else f"{tag}:sn:{status}:{name}"

    async def _server_ms(self) -> int:
        """The Redis server's clock in ms (leases are judged by it, not by ours)."""
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _eval(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA (loading the script if the server does not know it yet); the calls of
        one event-loop turn share a round trip (see :class:`CommandBatcher`)."""
        return await self.batcher.evalsha(script, keys, args)

    # -- transitions ------------------------------------------------------------------

    async def create(
        self, record: SagaRecord, *, token: str, lease: float
    ) -> tuple[SagaRecord, bool]:
        """Store a new instance leased to ``token`` (see :class:`SagaStore`)."""
        tag = self._shard(record.saga_id)
        args = [
            record.saga_id,
            token,
            int(lease * 1000),
            definition_key(record.name, record.definition),
            _blob(record.to_fields()),
        ]
        keys = [
            self._record_key(record.saga_id),
            f"{tag}:leases",
            f"{tag}:live",
            self._index(tag, record.status),
            self._index(tag, record.status, record.name),
        ]
        try:
            async with self._gate:
                created = await self._eval(self._create, keys, args)
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable("create", exc) from exc
        except redis.exceptions.RedisError as exc:
            raise _unavailable("create", exc) from exc
        if created:
            record.token = token
            return record, True
        existing = await self.get(record.saga_id)
        if existing is None:  # expired between the two calls: a new one is stored next time
            raise SagaStateError(f"saga {record.saga_id!r} expired while being started; retry")
        return existing, False

    async def get(self, saga_id: str) -> SagaRecord | None:
        """The instance, or None."""
        with _translated("get"):
            async with self._gate:
                raw = await self.client.hgetall(self._record_key(saga_id))
        return SagaRecord.from_fields(_fields(raw)) if raw else None

    async def status(self, saga_id: str) -> SagaStatus | None:
        """Only the instance's status (one ``HGET``), or None."""
        with _translated("get status"):
            async with self._gate:
                raw = await self.batcher.execute("HGET", self._record_key(saga_id), "status")
        return SagaStatus(_text(raw)) if raw else None

    async def write(
        self,
        saga_id: str,
        token: str,
        change: Transition,
        *,
        current: SagaStatus,
        name: str,
        definition: str,
        lease: float,
        retention: float,
    ) -> None:
        """Apply ``change`` if ``token`` holds the lease; extend the lease or release it."""
        tag = self._shard(saga_id)
        new = change.status or current
        args: list[Any] = [
            saga_id,
            token,
            current.value,
            change.status.value if change.status is not None else "",
            int((change.lease if change.lease is not None else lease) * 1000),
            int(retention * 1000),
            "1" if change.release else "0",
            definition_key(name, definition),
            _blob(change.fields),
            "".join(f"{field}\0" for field in change.release_if_any),
        ]
        keys = [f"{tag}:r:{saga_id}", f"{tag}:leases", f"{tag}:live"]
        if new is not current:
            keys += (
                self._index(tag, current),
                self._index(tag, current, name),
                self._index(tag, new),
                self._index(tag, new, name),
            )
        if change.outbox:  # written by the same script: transition and outbox are atomic
            keys.append(f"{tag}:outbox")
            args += [len(change.outbox), *change.outbox]
        try:
            async with self._gate:
                outcome = await self._eval(self._write, keys, args)
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable("write", exc) from exc
        except redis.exceptions.RedisError as exc:
            raise _unavailable("write", exc) from exc
        if outcome == 0:
            raise LeaseLost(f"saga {saga_id!r}: lease token {token[:8]}… is no longer current")
        if outcome == -1:
            raise SagaStateError(f"saga {saga_id!r} is no longer {current.value}")

    async def claim(
        self, saga_id: str, token: str, *, lease: float, force: bool = False
    ) -> SagaRecord:
        """Lease the instance to ``token`` if its lease expired (always with ``force``)."""
        return await self._claim_one(saga_id, token, lease=lease, force=force, known=())

    async def _claim_one(
        self, saga_id: str, token: str, *, lease: float, force: bool, known: Collection[str]
    ) -> SagaRecord:
        tag = self._shard(saga_id)
        args = [saga_id, token, int(lease * 1000), "1" if force else "0", *known]
        with _translated("claim"):
            async with self._gate:
                raw = await self._claim(
                    keys=[self._record_key(saga_id), f"{tag}:leases"], args=args
                )
        if raw == -1:
            raise SagaNotFound(f"no saga instance with id {saga_id!r}")
        if isinstance(raw, int):
            raise LeaseLost(f"saga {saga_id!r} is leased to another runner or not claimable")
        return SagaRecord.from_fields(_fields(raw))

    async def claim_reply(
        self,
        saga_id: str,
        wait: Waiting,
        token: str,
        *,
        lease: float,
        known: Collection[str],
        reply: str = "",
    ) -> SagaRecord | None:
        """Lease the instance to ``token`` only while it waits for ``wait`` (see SagaStore)."""
        keys = [self._record_key(saga_id), f"{self._shard(saga_id)}:leases"]
        args: list[str | int] = [saga_id, token, int(lease * 1000)]
        args += [wait.step, wait.direction, str(wait.attempt), wait.token, reply, *known]
        with _translated("claim_reply"):
            async with self._gate:
                raw = await self._eval(self._claim_reply, keys, args)
        if raw == -1 or raw == -2:
            raise UnknownSaga(saga_id)
        if not raw:
            raise LeaseLost(f"saga {saga_id!r} no longer waits for that reply")
        return None if raw == 1 else SagaRecord.from_fields(_fields(raw))  # 1: stored

    async def signal(self, saga_id: str, event: str, payload: str) -> tuple[bool, bool]:
        """Store ``event`` once; release the lease of an active instance that awaits it."""
        keys = [self._record_key(saga_id), f"{self._shard(saga_id)}:leases"]
        with _translated("signal"):
            async with self._gate:
                raw = await self._eval(
                    self._signal, keys, [saga_id, f"event:{event}", payload, event]
                )
        if raw == -1:
            raise SagaNotFound(f"no saga instance with id {saga_id!r}")
        if isinstance(raw, list):
            raise SagaStateError(refused_event(saga_id, event, _text(raw[1])))
        return raw != 0, raw == 2

    def outbox(self, *, consumer: str, claim_after: float) -> RedisOutbox:
        """The shards' outbox streams, read by the relay ``consumer`` (see :class:`RedisOutbox`)."""
        return RedisOutbox(
            self.client,
            streams=[f"{tag}:outbox" for tag in self._tags],
            stream_of=lambda saga_id: f"{self._shard(saga_id)}:outbox",
            consumer=consumer,
            claim_after=claim_after,
        )

    async def claim_expired(
        self, known: Collection[str], tokens: Callable[[], str], *, lease: float, limit: int
    ) -> list[SagaRecord]:
        """Claim up to ``limit`` active instances of known definitions whose lease expired."""
        if not known:
            return []
        with _translated("claim_expired"):
            now_ms = await self._server_ms()
            async with self.client.pipeline(transaction=False) as pipe:
                for shard in range(self.shards):
                    pipe.zrangebyscore(f"{self._tag(shard)}:leases", "-inf", now_ms, 0, limit)
                candidates = [_text(i) for ids in await pipe.execute() for i in ids]
        claimed: list[SagaRecord] = []
        for saga_id in candidates[: limit * 2]:
            if len(claimed) >= limit:
                break
            try:
                claimed.append(
                    await self._claim_one(saga_id, tokens(), lease=lease, force=False, known=known)
                )
            except (LeaseLost, SagaNotFound):
                continue
        return claimed

    async def _renew_one(self, saga_id: str, token: str, ms: int) -> Any:
        async with self._gate:  # bounded like every other call (the pool would refuse)
            return await self._renew(keys=self._lease_keys(saga_id), args=[saga_id, token, ms])

    async def renew(self, leases: Sequence[tuple[str, str]], *, lease: float) -> list[bool]:
        """Extend the leases ``(saga_id, token)``; False where the token is stale."""
        ms = int(lease * 1000)
        with _translated("renew"):
            if self._cluster:  # a cluster pipeline refuses scripts: one call each, at once
                results = await asyncio.gather(*(self._renew_one(i, t, ms) for i, t in leases))
            else:
                async with self.client.pipeline(transaction=False) as pipe:
                    for saga_id, token in leases:
                        keys = self._lease_keys(saga_id)
                        await self._renew(keys=keys, args=[saga_id, token, ms], client=pipe)
                    results = await pipe.execute() if leases else []
        return [bool(r) for r in results]

    # -- queries ----------------------------------------------------------------------

    async def list(
        self,
        *,
        status: SagaStatus | None = None,
        name: str | None = None,
        older_than: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Instances by time in their status, oldest first (see :class:`SagaStore`)."""
        after = decode_cursor(cursor)
        low: Any = after[0] * 1000 - 1 if after else "-inf"
        statuses = (status,) if status is not None else _ALL
        with _translated("list"):
            high: Any = "+inf"
            if older_than is not None:
                high = await self._server_ms() - int(older_than * 1000)
            async with self.client.pipeline(transaction=False) as pipe:
                for shard in range(self.shards):
                    for st in statuses:
                        key = self._index(self._tag(shard), st, name)
                        pipe.zrangebyscore(key, low, high, 0, limit + 1, withscores=True)
                rows = await pipe.execute()
            entries = sorted((score / 1000, _text(member)) for row in rows for member, score in row)
            if after is not None:
                entries = [e for e in entries if (round(e[0], 3), e[1]) > after]
            chosen = entries[: limit + 1]
            async with self.client.pipeline(transaction=False) as pipe:
                for _, saga_id in chosen:
                    pipe.hgetall(self._record_key(saga_id))
                raws = await pipe.execute()
        items = [SagaRecord.from_fields(_fields(raw)) for raw in raws if raw]
        more = len(items) > limit
        items = items[:limit]
        next_cursor = (
            encode_cursor((round(items[-1].since, 3), items[-1].saga_id)) if more else None
        )
        return Page(items, next_cursor)

    async def live_definitions(self, name: str) -> dict[str, int]:
        """Count of RUNNING/COMPENSATING instances of saga ``name`` per definition hash."""
        counts: dict[str, int] = {}
        with _translated("live_definitions"):
            async with self.client.pipeline(transaction=False) as pipe:
                for shard in range(self.shards):
                    pipe.hgetall(f"{self._tag(shard)}:live")
                for raw in await pipe.execute():
                    for key, value in _fields(raw).items():
                        saga, _, definition = key.rpartition(":")
                        if saga == name and int(value) > 0:
                            counts[definition] = counts.get(definition, 0) + int(value)
        return counts

    async def backlog(self) -> int:
        """Active instances whose lease expired and nobody has claimed yet."""
        with _translated("backlog"):
            now_ms = await self._server_ms()
            async with self.client.pipeline(transaction=False) as pipe:
                for shard in range(self.shards):
                    pipe.zcount(f"{self._tag(shard)}:leases", "-inf", now_ms)
                return sum(int(n) for n in await pipe.execute())

    async def counts(self, names: Collection[str]) -> dict[tuple[str, SagaStatus], int]:
        """Unfinished instances per (saga name, status): a pipelined ``ZCARD`` per index."""
        keys, n = [(name, status) for name in names for status in UNFINISHED], self.shards
        with _translated("counts"):
            async with self.client.pipeline(transaction=False) as pipe:
                for (name, status), shard in itertools.product(keys, range(n)):
                    pipe.zcard(self._index(self._tag(shard), status, name))
                sizes = [int(size) for size in await pipe.execute()]
        return {key: sum(sizes[i * n : (i + 1) * n]) for i, key in enumerate(keys)}

    async def ping(self) -> None:
        """Raise :class:`BackendUnavailable` if Redis does not answer."""
        with _translated("PING"):
            await self.client.ping()

    async def aclose(self) -> None:
        """The client belongs to the caller (the service closes ``svc.redis``)."""
