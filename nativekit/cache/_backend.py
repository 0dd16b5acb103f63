"""The cache backend protocol and its in-process reference implementation."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class CacheBackend(Protocol):
    """Stores entry bytes by key, with expiry, tags and short leases.

    Every method may raise :class:`~nativekit.errors.BackendUnavailable`; the
    :class:`~nativekit.cache.Cache` in front turns that into a miss.
    """

    async def get(self, key: str) -> bytes | None:
        """The entry at ``key``, or None."""
        ...

    async def set(self, key: str, value: bytes, *, ttl: float, tags: Sequence[str] = ()) -> None:
        """Store ``value`` for ``ttl`` seconds, indexed under ``tags``.

        Filling a missing key needs no announcement to near caches: they
        cannot hold a key that expired or was deleted (and announced).
        """
        ...

    async def delete(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` (notifying near caches); the number that existed."""
        ...

    async def invalidate_tags(self, tags: Sequence[str]) -> list[str]:
        """Remove every entry indexed under one of ``tags``; the keys removed."""
        ...

    async def acquire(self, key: str, *, lease: float) -> str | None:
        """Take the lease ``key`` for ``lease`` seconds: a token, or None if held."""
        ...

    async def release(self, key: str, token: str) -> None:
        """Give back a lease taken with ``token`` (no-op if it expired meanwhile)."""
        ...

    async def ping(self) -> None:
        """Raise unless the backend answers."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """A bounded LRU in this process, with per-entry expiry and a tag index.

    The tag index only ever holds keys of live entries: an entry that expires
    or is evicted leaves its tags, so no index grows without bound.

    Args:
        max_entries: entries kept; the least recently used goes first.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, bytes, tuple[str, ...]]] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._leases: dict[str, tuple[float, str]] = {}

    def __len__(self) -> int:
        return len(self._data)

    def tag_index_size(self, tag: str) -> int:
        """Keys indexed under ``tag`` (live entries only)."""
        self._purge_expired()
        return len(self._tags.get(tag, ()))

    async def get(self, key: str) -> bytes | None:
        """The entry at ``key``, or None (expired entries are dropped)."""
        found = self._data.get(key)
        if found is None:
            return None
        if found[0] <= time.monotonic():
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return found[1]

    async def set(self, key: str, value: bytes, *, ttl: float, tags: Sequence[str] = ()) -> None:
        """Store ``value`` for ``ttl`` seconds under ``tags``, evicting the LRU entry if full."""
        if key in self._data:
            self._drop(key)
        self._data[key] = (time.monotonic() + ttl, value, tuple(tags))
        for tag in tags:
            self._tags.setdefault(tag, set()).add(key)
        while len(self._data) > self.max_entries:
            self._drop(next(iter(self._data)))

    async def delete(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; the number that existed."""
        removed = 0
        for key in keys:
            if key in self._data:
                self._drop(key)
                removed += 1
        return removed

    async def invalidate_tags(self, tags: Sequence[str]) -> list[str]:
        """Remove the entries under ``tags``; the keys removed."""
        self._purge_expired()
        keys = sorted({k for tag in tags for k in self._tags.get(tag, ())})
        await self.delete(keys)
        return keys

    async def acquire(self, key: str, *, lease: float) -> str | None:
        """Take lease ``key`` unless a live one is held."""
        now = time.monotonic()
        held = self._leases.get(key)
        if held is not None and held[0] > now:
            return None
        token = uuid.uuid4().hex
        self._leases[key] = (now + lease, token)
        return token

    async def release(self, key: str, token: str) -> None:
        """Give back lease ``key`` if ``token`` still holds it."""
        held = self._leases.get(key)
        if held is not None and held[1] == token:
            del self._leases[key]

    async def ping(self) -> None:
        """Always answers."""

    async def aclose(self) -> None:
        """Drop everything."""
        self._data.clear()
        self._tags.clear()
        self._leases.clear()

    def _drop(self, key: str) -> None:
        _, _, tags = self._data.pop(key)
        for tag in tags:
            members = self._tags.get(tag)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._tags[tag]

    def _purge_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, (exp, _, _) in self._data.items() if exp <= now]:
            self._drop(key)
