"""Moving the saga state of a :class:`RedisSagaStore` from one shard count to another.

A saga's shard is ``crc32(saga_id) % shards``, so changing
``NATIVEKIT_SAGA_SHARDS`` on existing data would hide every record whose shard
changes. :func:`reshard_sagas` moves them, offline: no replica of the service may
run meanwhile (``nativekit sagas reshard`` says so). Per record it copies the
hash (with its remaining TTL) and its index entries (status, status+name, lease)
into the new shard, then deletes the old ones, so a run interrupted half-way can
simply be run again; the live counts are counted anew at the end. Entries
waiting in an old shard's outbox stream are appended, in order, to the new
stream of the same number modulo the new count (one saga's entries stay in one
stream, in order); their relay group is created on every new stream. Entries a
relay had read but not acknowledged are published again (consumers dedup).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import redis.exceptions

from nativekit.backends.redis._client import UNAVAILABLE_ERRORS
from nativekit.backends.redis._outbox import GROUP
from nativekit.errors import BackendUnavailable, ConfigError
from nativekit.saga._store.model import SagaStatus

__all__ = ["ReshardReport", "reshard_sagas"]

_ACTIVE = (SagaStatus.RUNNING, SagaStatus.COMPENSATING)
_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, redis.exceptions.RedisError)


@dataclass
class ReshardReport:
    """What :func:`reshard_sagas` did."""

    records: int = 0
    moved: int = 0
    outbox_entries: int = 0


@dataclass(frozen=True)
class _Layout:
    """The key layout of ``RedisSagaStore`` (see its module docstring) for one count."""

    prefix: str
    shards: int

    def tag(self, shard: int) -> str:
        return f"{{{self.prefix}:{shard:02d}}}"

    def tag_of(self, saga_id: str) -> str:
        return self.tag(zlib.crc32(saga_id.encode()) % self.shards)

    def record(self, saga_id: str) -> str:
        return f"{self.tag_of(saga_id)}:r:{saga_id}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def reshard_sagas(client: Any, *, prefix: str, old: int, new: int) -> ReshardReport:
    """Move every saga of ``prefix`` from ``old`` shards to ``new`` shards (offline).

    Raises:
        ConfigError: the counts are equal or out of range.
        BackendUnavailable: Redis failed; run it again once Redis is back.
    """
    try:
        return await _reshard(client, prefix, old, new)
    except _ERRORS as exc:
        raise BackendUnavailable(
            f"Redis failed while resharding sagas of {prefix!r}: {exc}. Run it again once "
            "Redis answers: an interrupted move is finished by the next run."
        ) from exc


async def _reshard(client: Any, prefix: str, old: int, new: int) -> ReshardReport:
    if old == new:
        raise ConfigError(f"the saga store already has {old} shards; nothing to move.")
    if not (1 <= new <= 1024 and 1 <= old <= 1024):
        raise ConfigError(f"saga shards must be between 1 and 1024, got {old} -> {new}.")
    source, target = _Layout(prefix, old), _Layout(prefix, new)
    report = ReshardReport()
    # every id first: a moved record may land in an old shard not read yet
    found: dict[str, str] = {}
    for shard in range(old):
        tag = source.tag(shard)
        for status in SagaStatus:
            for member in await client.zrange(f"{tag}:st:{status}", 0, -1):
                found[_text(member)] = tag
    for saga_id, tag in found.items():
        report.records += 1
        if target.tag_of(saga_id) != tag:
            await _move(client, source, target, saga_id)
            report.moved += 1
    for shard in range(old):
        tag = source.tag(shard)
        report.outbox_entries += await _move_outbox(client, tag, target.tag(shard % new))
    for shard in range(new, old):
        tag = source.tag(shard)
        await client.delete(f"{tag}:live", f"{tag}:leases", f"{tag}:outbox")
    for shard in range(new):
        await _rebuild_live(client, target.tag(shard))
        try:
            await client.xgroup_create(f"{target.tag(shard)}:outbox", GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
    return report


async def _move(client: Any, source: _Layout, target: _Layout, saga_id: str) -> None:
    """Copy one record and its index entries to the new shard, then drop the old ones."""
    old_tag, new_tag = source.tag_of(saga_id), target.tag_of(saga_id)
    old_key, new_key = source.record(saga_id), target.record(saga_id)
    raw = await client.hgetall(old_key)
    if not raw:  # expired meanwhile: only its index entries are left
        await _drop_index_entries(client, old_tag, saga_id)
        return
    fields = {_text(k): _text(v) for k, v in raw.items()}
    status, name = SagaStatus(fields["status"]), fields["name"]
    ttl = await client.pttl(old_key)
    await client.hset(new_key, mapping=fields)
    if ttl > 0:
        await client.pexpire(new_key, ttl)
    for index in (f"st:{status}", f"sn:{status}:{name}"):
        score = await client.zscore(f"{old_tag}:{index}", saga_id)
        if score is not None:
            await client.zadd(f"{new_tag}:{index}", {saga_id: score})
    lease = await client.zscore(f"{old_tag}:leases", saga_id)
    if lease is not None:
        await client.zadd(f"{new_tag}:leases", {saga_id: lease})
    await _drop_index_entries(client, old_tag, saga_id, status, name)
    await client.delete(old_key)


async def _rebuild_live(client: Any, tag: str) -> None:
    """Count the shard's active instances per definition anew (what ``live`` holds)."""
    counts: dict[str, int] = {}
    for status in _ACTIVE:
        for member in await client.zrange(f"{tag}:st:{status}", 0, -1):
            saga_id = _text(member)
            name, definition = await client.hmget(f"{tag}:r:{saga_id}", ["name", "def"])
            if name is not None:
                key = f"{_text(name)}:{_text(definition or b'')}"
                counts[key] = counts.get(key, 0) + 1
    await client.delete(f"{tag}:live")
    if counts:
        await client.hset(f"{tag}:live", mapping=counts)


async def _drop_index_entries(
    client: Any, tag: str, saga_id: str, status: SagaStatus | None = None, name: str = ""
) -> None:
    statuses = [status] if status is not None else list(SagaStatus)
    for st in statuses:
        await client.zrem(f"{tag}:st:{st}", saga_id)
        if name:
            await client.zrem(f"{tag}:sn:{st}:{name}", saga_id)
    await client.zrem(f"{tag}:leases", saga_id)


async def _move_outbox(client: Any, old_tag: str, new_tag: str) -> int:
    """Append the old stream's entries to the new one (unless it is the same), in order."""
    old, new = f"{old_tag}:outbox", f"{new_tag}:outbox"
    if old == new:
        return 0
    moved = 0
    for entry_id, fields in await client.xrange(old):
        if fields:
            await client.xadd(new, fields)
            moved += 1
        await client.xdel(old, entry_id)
    return moved
