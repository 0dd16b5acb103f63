"""``RedisOutbox``: the outbox streams of a ``RedisSagaStore``, read by a consumer group.

Each shard ``{P:S}`` has a stream ``{P:S}:outbox`` that the saga transition
script appends to. Relays of all replicas read it through one consumer group
(``relay``), so each entry goes to one relay; an entry read by a relay that
died stays pending and is taken over (``XAUTOCLAIM``) after ``claim_after``
seconds. A published entry is acknowledged and deleted (``XACK`` + ``XDEL``).
Every command touches one stream key, so this works on Redis Cluster too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from nativekit.backends.redis._client import UNAVAILABLE_ERRORS
from nativekit.errors import BackendUnavailable
from nativekit.saga._store.outbox import Batch, OutboxEntry

GROUP = "relay"

_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, redis.exceptions.RedisError)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisOutbox:
    """The outbox of ``store`` as seen by one relay (``consumer`` names it in the group)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        streams: Sequence[str],
        stream_of: Callable[[str], str],
        consumer: str,
        claim_after: float = 10.0,
    ) -> None:
        self.client = client
        self.streams = list(streams)
        self.stream_of = stream_of
        self.consumer = consumer
        self.claim_after_ms = int(claim_after * 1000)
        self._next_claim = 0.0

    async def start(self) -> None:
        """Create the consumer group on every shard's stream (idempotent)."""
        for stream in self.streams:
            try:
                await self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise BackendUnavailable(f"Redis outbox: cannot create group: {exc}") from exc
            except UNAVAILABLE_ERRORS as exc:
                raise BackendUnavailable(f"Redis outbox unavailable: {exc}") from exc

    async def listen(self, wake: Callable[[], None]) -> None:
        """Nothing to listen to: the relay polls (and local writers wake it)."""

    async def unlisten(self) -> None:
        """Nothing to stop."""

    async def read(self, limit: int, saga_ids: Collection[str] | None = None) -> Batch:
        """New entries of every shard, or of the shards of ``saga_ids`` (one pipelined round
        trip), plus abandoned ones on full reads."""
        batch = Batch([], [])
        streams = self.streams
        if saga_ids is not None:
            streams = sorted({self.stream_of(i) for i in saga_ids})
            if not streams:
                return batch
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for stream in streams:
                    pipe.xreadgroup(GROUP, self.consumer, {stream: ">"}, count=limit)
                rows = await pipe.execute()
            for row in rows:
                for stream, messages in row or []:
                    self._add(batch, _text(stream), messages)
            if saga_ids is None and not batch.entries and time.monotonic() >= self._next_claim:
                self._next_claim = time.monotonic() + self.claim_after_ms / 4000
                await self._claim_abandoned(batch, limit)
        except _ERRORS as exc:
            raise BackendUnavailable(f"Redis outbox read failed: {exc}") from exc
        return batch

    async def _claim_abandoned(self, batch: Batch, limit: int) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.xautoclaim(
                    stream, GROUP, self.consumer, self.claim_after_ms, start_id="0-0", count=limit
                )
            rows = await pipe.execute()
        for stream, row in zip(self.streams, rows, strict=True):
            self._add(batch, stream, row[1])

    @staticmethod
    def _add(batch: Batch, stream: str, messages: Any) -> None:
        for entry_id, fields in messages:
            if not fields:  # deleted after it was read: nothing to publish
                continue
            raw = fields.get(b"e") if b"e" in fields else fields.get("e")
            batch.entries.append(OutboxEntry.decode(raw))
            batch.handles.append((stream, entry_id))

    async def ack(self, handles: Sequence[Any]) -> None:
        """Acknowledge and delete published entries (per shard, pipelined)."""
        by_stream: dict[str, list[Any]] = {}
        for stream, entry_id in handles:
            by_stream.setdefault(stream, []).append(entry_id)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for stream, ids in by_stream.items():
                    pipe.xack(stream, GROUP, *ids)
                    pipe.xdel(stream, *ids)
                await pipe.execute()
        except _ERRORS as exc:
            raise BackendUnavailable(f"Redis outbox ack failed: {exc}") from exc

    async def backlog(self) -> tuple[int, float]:
        """Entries in all streams, and the age of the oldest (from its stream id)."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for stream in self.streams:
                    pipe.xlen(stream)
                    pipe.xrange(stream, count=1)
                rows = await pipe.execute()
        except _ERRORS as exc:
            raise BackendUnavailable(f"Redis outbox backlog failed: {exc}") from exc
        total = sum(int(n) for n in rows[::2])
        oldest = [int(_text(r[0][0]).split("-")[0]) for r in rows[1::2] if r]
        age = max(0.0, time.time() - min(oldest) / 1000) if oldest else 0.0
        return total, age
