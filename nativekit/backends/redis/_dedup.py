"""The Redis :class:`~nativekit.messaging._dedup.DedupStore`: one Lua script call per batch.

Needs Redis 5 or later (the scripts read ``TIME`` before writing, which relies on
effect replication) or Valkey.

Layout. Records live as fields of time-bucketed hashes, not as keys of their own:
``nk:dedup:{<namespace>}:b:<n>`` holds the records written while the Redis clock
was in bucket ``n`` (``bucket_seconds`` wide, the retention by default). A field is the
message's key; its value carries the state and the record's own deadline:

* ``P<deadline ms>:<token>`` — IN_PROGRESS, the lease ends at the deadline;
* ``D<deadline ms>`` — DONE, ``X<deadline ms>`` — DEAD, kept until the deadline.

A record past its deadline counts as absent. Lookups read the newest record of a
key across the buckets that can still hold a live one (the current one and those
the retention spans before it), with one ``HMGET`` per bucket for the whole batch; writes
are one ``HSET`` into the current bucket. A bucket expires (``PEXPIREAT``) when
the last deadline it can hold has passed, so no key gets a TTL or an allocation
of its own: a batch of 500 costs Redis a handful of commands instead of 500.

All keys of a store share one hash tag (``{<namespace>}``), so every script
touches a single hash slot and works on Redis Cluster: the script declares the
store's counter key (which routes the call to the slot's node) and receives the
batch's keys as one newline-joined argument, because packing hundreds of
arguments costs redis-py more than the script costs Redis. Fencing tokens come
from the counter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from itertools import count, repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import redis.exceptions

from nativekit.backends.redis._client import UNAVAILABLE_ERRORS
from nativekit.backends.redis._dedup_scripts import CLAIM, FINISH, RELEASE, RENEW, REVIVE
from nativekit.errors import BackendUnavailable, ConfigError
from nativekit.messaging._dedup import Claim, ClaimStatus, FinalState

if TYPE_CHECKING:
    import redis.asyncio as aioredis

_STATUS = {"c": ClaimStatus.CLAIMED, "d": ClaimStatus.DONE, "x": ClaimStatus.DEAD}
_STATE_NAMES = {b"P": "IN_PROGRESS", b"D": "DONE", b"X": "DEAD"}


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _escape(key: str) -> str:
    """Keys travel newline-joined: escape ``%`` and newlines, and mark the empty key."""
    if not key:
        return "%"
    if "%" in key or "\n" in key:
        return key.replace("%", "%25").replace("\n", "%0A")
    return key


def _joined(keys: Sequence[str]) -> str:
    text = "\n".join(keys)
    # Common case, checked in C: no key needs escaping (no %, no newline, none empty).
    if "%" not in text and text.count("\n") == len(keys) - 1 and all(keys):
        return text
    return "\n".join(map(_escape, keys))


def _keys(claims: Sequence[Claim]) -> list[str]:
    return list(map(_key_of, claims))


def _tokens(claims: Sequence[Claim]) -> str:
    return "\n".join(map(str, map(_token_of, claims)))


_key_of, _token_of = attrgetter("key"), attrgetter("token")  # per claim in C, not bytecode


class RedisDedupStore:
    """Dedup records in Redis, in time-bucketed hashes under ``{prefix}{{namespace}}:b:<n>``.

    Args:
        client: a redis-py asyncio client (the service's shared one).
        namespace: scope of the keys, e.g. ``"<group>:<handler>"``.
        retention: the longest ``retain`` (seconds) this store is asked for: lookups
            read the buckets that span it.
        bucket_seconds: width of a bucket, the retention by default (lookups read two
            buckets). A record's memory is freed between ``retain`` and ``retain +
            bucket_seconds`` after it was written; narrower buckets free it sooner but
            cost every lookup one more ``HMGET`` per bucket the retention spans (each
            a hash lookup per key in a large hash: measured, more than the memory is
            worth).
        prefix: key prefix.
        url_safe: the Redis URL without password, for error messages.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        retention: float = 7 * 86400.0,
        bucket_seconds: float | None = None,
        prefix: str = "nk:dedup:",
        url_safe: str = "redis",
    ) -> None:
        bucket_seconds = retention if bucket_seconds is None else bucket_seconds
        if retention <= 0 or bucket_seconds <= 0:
            raise ConfigError(
                f"RedisDedupStore needs retention > 0 and bucket_seconds > 0, got "
                f"retention={retention:g}, bucket_seconds={bucket_seconds:g}."
            )
        self.client = client
        self.url_safe = url_safe
        self.retention = retention
        self._base = f"{prefix}{{{namespace}}}:"
        self._fence = [self._base + "fence"]
        self._width = _ms(bucket_seconds)
        self._older = -(-_ms(retention) // self._width)  # buckets before the current one
        self._claim = client.register_script(CLAIM)
        self._finish = client.register_script(FINISH)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._revive = client.register_script(REVIVE)

    def bucket_keys(self, at_ms: int) -> list[str]:
        """The Redis keys of the buckets a lookup at ``at_ms`` (Redis clock) reads."""
        current = at_ms // self._width
        return [f"{self._base}b:{b}" for b in range(current, current - self._older - 1, -1)]

    @property
    def fence_key(self) -> str:
        """The Redis key of the fencing-token counter."""
        return self._fence[0]

    async def _call(self, op: str, script: Any, keys: str, *args: Any) -> Any:
        try:
            return await script(
                keys=self._fence, args=[self._base, keys, self._width, self._older, *args]
            )
        except UNAVAILABLE_ERRORS as exc:
            raise BackendUnavailable(
                f"Redis at {self.url_safe} failed dedup {op}: {exc}. "
                "Is NATIVEKIT_REDIS_URL right and the server up?"
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise BackendUnavailable(
                f"Redis at {self.url_safe} rejected dedup {op}: {exc}"
            ) from exc

    async def claim_many(self, keys: Sequence[str], *, lease: float) -> list[Claim]:
        """Claim free keys (one script call); report DONE/DEAD/BUSY for the others."""
        if not keys:
            return []
        raw = await self._call("claim", self._claim, _joined(keys), _ms(lease), uuid.uuid4().hex)
        flags, _, first = raw.decode().partition(",")
        token = int(first)
        new = tuple.__new__  # a NamedTuple's own __new__ is a Python call per key
        claimed, busy = ClaimStatus.CLAIMED, ClaimStatus.BUSY
        if flags == "c" * len(keys):  # the usual answer, all claimed: built in C
            fields = zip(keys, repeat(claimed), count(token))
            return list(map(new, repeat(Claim), fields))
        out = []
        for key, flag in zip(keys, flags, strict=True):
            if flag == "c":
                out.append(new(Claim, (key, claimed, token)))
                token += 1
            else:
                out.append(new(Claim, (key, _STATUS.get(flag, busy), 0)))
        return out

    async def finish_many(
        self,
        claims: Sequence[Claim],
        *,
        retain: float,
        state: FinalState = FinalState.DONE,
    ) -> list[bool]:
        """Mark claims final (one script call); False where another owner holds the key
        (or it is final already)."""
        if not claims:
            return []
        if retain > self.retention:
            raise ConfigError(
                f"retain={retain:g}s exceeds this dedup store's retention of "
                f"{self.retention:g}s; create the store with retention >= retain."
            )
        raw = await self._call(
            "finish",
            self._finish,
            _joined(_keys(claims)),
            _tokens(claims),
            state.value,
            _ms(retain),
        )
        return [flag == 49 for flag in raw]  # b"1"

    async def renew_many(self, claims: Sequence[Claim], *, lease: float) -> list[bool]:
        """Extend held leases (one script call)."""
        if not claims:
            return []
        raw = await self._call(
            "renew",
            self._renew,
            _joined(_keys(claims)),
            _tokens(claims),
            _ms(lease),
        )
        return [flag == 49 for flag in raw]  # b"1"

    async def release_many(self, claims: Sequence[Claim]) -> None:
        """Drop held leases (one script call)."""
        if claims:
            await self._call("release", self._release, _joined(_keys(claims)), _tokens(claims))

    async def states(self, keys: Sequence[str]) -> list[str | None]:
        """The live state of each key, for inspection: ``"IN_PROGRESS"``, ``"DONE"``,
        ``"DEAD"`` or None (no record, or past its deadline). Claims nothing."""
        if not keys:
            return []
        fields = [_escape(k) for k in keys]
        try:
            seconds, micros = await self.client.time()
            now = seconds * 1000 + micros // 1000
            pipe = self.client.pipeline(transaction=False)
            for bucket in self.bucket_keys(now):
                pipe.hmget(bucket, fields)
            buckets = await pipe.execute()
        except UNAVAILABLE_ERRORS as exc:
            raise BackendUnavailable(f"Redis at {self.url_safe} failed dedup read: {exc}") from exc
        out: list[str | None] = []
        for i in range(len(keys)):
            value = next((b[i] for b in buckets if b[i] is not None), None)
            if value is None or int(value[1:14]) <= now:
                out.append(None)
            else:
                out.append(_STATE_NAMES[value[:1]])
        return out

    async def revive(self, key: str) -> bool:
        """Forget ``key``'s DEAD mark so its message is handled again (True if it was DEAD)."""
        return bool(await self._call("revive", self._revive, _joined([key])))

    async def ping(self) -> None:
        """PING the server."""
        try:
            await self.client.ping()
        except UNAVAILABLE_ERRORS as exc:
            raise BackendUnavailable(f"Redis at {self.url_safe} failed PING: {exc}") from exc

    async def aclose(self) -> None:
        """The client belongs to the service; nothing to close here."""
