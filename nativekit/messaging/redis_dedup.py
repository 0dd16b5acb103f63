"""The Redis :class:`~nativekit.messaging.dedup.DedupStore`: one Lua script call per batch.

Needs Redis 6.2 or later (``SET … GET``) or Valkey.

Keys of one store share a hash tag (``nk:dedup:{<namespace>}:<key>``), so every
script touches a single hash slot and works on Redis Cluster: the script declares
the store's counter key (which routes the call to the slot's node) and receives
the batch's keys as one newline-joined argument, because packing hundreds of
arguments costs redis-py more than the script costs Redis. A lease is a ``PX``
expiry on the IN_PROGRESS value, so a dead owner's claim frees itself; fencing
tokens come from the counter.
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

# ARGV[1] is the key prefix, ARGV[2] the newline-joined keys; replies are one string
# (parsing a 500-element RESP array in Python costs more than the script itself).
_SPLIT = """
local function split(text)
  local out = {}
  for part in string.gmatch(text, '[^\\n]+') do out[#out + 1] = part end
  return out
end
"""

_CLAIM = (
    _SPLIT
    + """
local ids = split(ARGV[2])
local out = {}
local token = redis.call('INCRBY', KEYS[1], #ids) - #ids
for i = 1, #ids do
  token = token + 1
  local key = ARGV[1] .. ids[i]
  if redis.call('SET', key, 'P:' .. token, 'NX', 'PX', ARGV[3]) then
    out[i] = token
  else
    local v = redis.call('GET', key)
    if v == 'D' then out[i] = -1
    elseif v == 'X' then out[i] = -2
    else out[i] = 0 end
  end
end
return table.concat(out, ',')
"""
)

# One SET per key on the common path: overwrite and look at what was there. If another
# owner held the key (our lease expired and it was claimed again), put its value back.
_FINISH = (
    _SPLIT
    + """
local ids, tokens = split(ARGV[2]), split(ARGV[3])
local out = {}
for i = 1, #ids do
  local key = ARGV[1] .. ids[i]
  local old = redis.call('SET', key, ARGV[4], 'XX', 'PX', ARGV[5], 'GET')
  if old == 'P:' .. tokens[i] then
    out[i] = '1'
  elseif not old then
    redis.call('SET', key, ARGV[4], 'PX', ARGV[5])
    out[i] = '1'
  else
    local keep = ARGV[5]
    if string.sub(old, 1, 2) == 'P:' then keep = ARGV[6] end
    redis.call('SET', key, old, 'PX', keep)
    out[i] = '0'
  end
end
return table.concat(out)
"""
)

_RENEW = (
    _SPLIT
    + """
local ids, tokens = split(ARGV[2]), split(ARGV[3])
local out = {}
for i = 1, #ids do
  local key = ARGV[1] .. ids[i]
  if redis.call('GET', key) == 'P:' .. tokens[i] then
    redis.call('PEXPIRE', key, ARGV[4])
    out[i] = '1'
  else out[i] = '0' end
end
return table.concat(out)
"""
)

_RELEASE = (
    _SPLIT
    + """
local ids, tokens = split(ARGV[2]), split(ARGV[3])
for i = 1, #ids do
  local key = ARGV[1] .. ids[i]
  if redis.call('GET', key) == 'P:' .. tokens[i] then redis.call('DEL', key) end
end
return 0
"""
)

# Forget a DEAD mark (and nothing else): 1 if the key was DEAD.
_REVIVE = """
if redis.call('GET', KEYS[1]) == 'X' then redis.call('DEL', KEYS[1]) return 1 end
return 0
"""

_STATUS = {-1: ClaimStatus.DONE, -2: ClaimStatus.DEAD, 0: ClaimStatus.BUSY}


def _state_name(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    if text == "D":
        return "DONE"
    return "DEAD" if text == "X" else "IN_PROGRESS"


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
    return "\n".join(map(_escape, keys))


def _tokens(claims: Sequence[Claim]) -> str:
    return "\n".join([str(c.token) for c in claims])


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
        self._fence = [self._base + "fence"]
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._revive = client.register_script(_REVIVE)

    def key(self, key: str) -> str:
        """The Redis key holding ``key``'s state."""
        return self._base + _escape(key)

    async def _call(self, op: str, script: Any, args: list[Any]) -> Any:
        try:
            return await script(keys=self._fence, args=[self._base, *args])
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
        raw = await self._call("claim", self._claim, [_joined(keys), _ms(lease)])
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
            [
                _joined([c.key for c in claims]),
                _tokens(claims),
                state.value,
                _ms(retain),
                _ms(lease),
            ],
        )
        return [flag == 49 for flag in raw]  # b"1"

    async def renew_many(self, claims: Sequence[Claim], *, lease: float) -> list[bool]:
        """Extend held leases (one script call)."""
        if not claims:
            return []
        raw = await self._call(
            "renew",
            self._renew,
            [_joined([c.key for c in claims]), _tokens(claims), _ms(lease)],
        )
        return [flag == 49 for flag in raw]  # b"1"

    async def release_many(self, claims: Sequence[Claim]) -> None:
        """Drop held leases (one script call)."""
        if claims:
            await self._call(
                "release", self._release, [_joined([c.key for c in claims]), _tokens(claims)]
            )

    async def states(self, keys: Sequence[str]) -> list[str | None]:
        """Operator view: ``"IN_PROGRESS"``, ``"DONE"``, ``"DEAD"`` or None (no record)."""
        if not keys:
            return []
        try:
            raw = await self.client.mget([self.key(k) for k in keys])
        except UNAVAILABLE_ERRORS as exc:
            raise BackendUnavailable(f"Redis at {self.url_safe} failed MGET: {exc}") from exc
        return [_state_name(value) for value in raw]

    async def revive(self, key: str) -> bool:
        """Forget ``key``'s DEAD mark so its message is handled again (True if it was DEAD)."""
        try:
            return bool(await self._revive(keys=[self.key(key)]))
        except UNAVAILABLE_ERRORS as exc:
            raise BackendUnavailable(
                f"Redis at {self.url_safe} failed dedup revive: {exc}. "
                "Is NATIVEKIT_REDIS_URL right and the server up?"
            ) from exc

    async def ping(self) -> None:
        """PING the server."""
        try:
            await self.client.ping()
        except UNAVAILABLE_ERRORS as exc:
            raise BackendUnavailable(f"Redis at {self.url_safe} failed PING: {exc}") from exc

    async def aclose(self) -> None:
        """The client belongs to the service; nothing to close here."""
