"""The Redis :class:`~nativekit.messaging.dedup.DedupStore`: one Lua script call per batch.

Needs Redis 6.2 or later (``SET … GET``) or Valkey.

Keys of one store share a hash tag (``nk:dedup:{<namespace>}:…``), so every
script touches a single hash slot and works on Redis Cluster. A lease is a
``PX`` expiry on the IN_PROGRESS value, so a dead owner's claim frees itself;
fencing tokens come from a counter in the same slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.exceptions

from nativekit.backends.redis import UNAVAILABLE_ERRORS
from nativekit.errors import BackendUnavailable
from nativekit.messaging.dedup import Claim, ClaimStatus, FinalState

if TYPE_CHECKING:
    import redis.asyncio as aioredis

# Replies are one comma-separated string: parsing a 500-element RESP array in Python
# costs more than the script itself.
_CLAIM = """
local out = {}
local token = redis.call('INCRBY', KEYS[1], #KEYS - 1) - (#KEYS - 1)
for i = 2, #KEYS do
  token = token + 1
  if redis.call('SET', KEYS[i], 'P:' .. token, 'NX', 'PX', ARGV[1]) then
    out[#out + 1] = token
  else
    local v = redis.call('GET', KEYS[i])
    if v == 'D' then out[#out + 1] = -1
    elseif v == 'X' then out[#out + 1] = -2
    else out[#out + 1] = 0 end
  end
end
return table.concat(out, ',')
"""

# One SET per key on the common path: overwrite and look at what was there. If another
# owner held the key (our lease expired and it was claimed again), put its value back.
_FINISH = """
local out = {}
for i = 1, #KEYS do
  local old = redis.call('SET', KEYS[i], ARGV[1], 'XX', 'PX', ARGV[2], 'GET')
  if old == 'P:' .. ARGV[i + 3] then
    out[i] = '1'
  elseif not old then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
    out[i] = '1'
  else
    local keep = ARGV[2]
    if string.sub(old, 1, 2) == 'P:' then keep = ARGV[3] end
    redis.call('SET', KEYS[i], old, 'PX', keep)
    out[i] = '0'
  end
end
return table.concat(out)
"""

_RENEW = """
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == 'P:' .. ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = '1'
  else out[i] = '0' end
end
return table.concat(out)
"""

_RELEASE = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == 'P:' .. ARGV[i] then redis.call('DEL', KEYS[i]) end
end
return 0
"""

_STATUS = {-1: ClaimStatus.DONE, -2: ClaimStatus.DEAD, 0: ClaimStatus.BUSY}


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisDedupStore:
    """Dedup records in Redis under ``{prefix}{{namespace}}:<key>``.

    Args:
        client: a redis-py asyncio client (the service's shared one).
        namespace: scope of the keys, e.g. ``"<group>:<handler>"``.
        prefix: key prefix.
        url_safe: the Redis URL without password, for error messages.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        namespace: str,
        prefix: str = "nk:dedup:",
        url_safe: str = "redis",
    ) -> None:
        self.client = client
        self.url_safe = url_safe
        self._base = f"{prefix}{{{namespace}}}:"
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def _keys(self, keys: Sequence[str]) -> list[str]:
        return [self._base + k for k in keys]

    async def _call(self, op: str, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
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
        raw = await self._call(
            "claim", self._claim, [self._base + "fence", *self._keys(keys)], [_ms(lease)]
        )
        out = []
        for key, field in zip(keys, raw.split(b","), strict=True):
            value = int(field)
            out.append(
                Claim(key, ClaimStatus.CLAIMED, value) if value > 0 else Claim(key, _STATUS[value])
            )
        return out

    async def finish_many(
        self,
        claims: Sequence[Claim],
        *,
        retain: float,
        state: FinalState = FinalState.DONE,
        lease: float = 30.0,
    ) -> list[bool]:
        """Mark claims final (one script call); False where another owner holds the key.

        ``lease`` is given back to another owner's claim that this call had to restore.
        """
        if not claims:
            return []
        raw = await self._call(
            "finish",
            self._finish,
            self._keys([c.key for c in claims]),
            [state.value, _ms(retain), _ms(lease), *(c.token for c in claims)],
        )
        return [flag == 49 for flag in raw]  # b"1"

    async def renew_many(self, claims: Sequence[Claim], *, lease: float) -> list[bool]:
        """Extend held leases (one script call)."""
        if not claims:
            return []
        raw = await self._call(
            "renew",
            self._renew,
            self._keys([c.key for c in claims]),
            [_ms(lease), *(c.token for c in claims)],
        )
        return [flag == 49 for flag in raw]  # b"1"

    async def release_many(self, claims: Sequence[Claim]) -> None:
        """Drop held leases (one script call)."""
        if claims:
            await self._call(
                "release",
                self._release,
                self._keys([c.key for c in claims]),
                [c.token for c in claims],
            )

    async def ping(self) -> None:
        """PING the server."""
        try:
            await self.client.ping()
        except UNAVAILABLE_ERRORS as exc:
            raise BackendUnavailable(f"Redis at {self.url_safe} failed PING: {exc}") from exc

    async def aclose(self) -> None:
        """The client belongs to the service; nothing to close here."""
