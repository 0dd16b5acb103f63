"""The near cache: decoded values of hot keys in process memory, in front of Redis.

Entries live at most ``max_age`` seconds and never past the Redis entry's own
expiry. Coherence across replicas comes from deletions announced on a Redis
channel: a replica drops the announced keys on receipt. Whenever the
subscription is down or was re-established (announcements may have been
missed) the near cache is flushed and stays off until subscribed again.
A value read from Redis is only stored if no announcement arrived while it
was being read (``epoch``), so an in-flight read cannot resurrect a key that
was just invalidated.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from nativekit._lifecycle import cancel_and_wait

MISSING: Any = object()


@runtime_checkable
class InvalidationSource(Protocol):
    """A cache backend that announces deletions on a channel (``RedisCache``)."""

    channel: str | None

    async def listen(
        self, on_keys: Callable[[list[str]], None], on_connected: Callable[[], None]
    ) -> None:
        """Deliver announced deletions to ``on_keys`` until cancelled; ``on_connected``
        runs on every (re)connection."""


class NearCache:
    """A bounded LRU of decoded values with expiry, switched off until subscribed."""

    def __init__(self, *, max_entries: int, max_age: float) -> None:
        self.max_entries = max_entries
        self.max_age = max_age
        self.active = False
        self.epoch = 0
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Any:
        """The value at ``key`` or :data:`MISSING`."""
        found = self._data.get(key)
        if found is None:
            return MISSING
        if found[0] < time.monotonic():
            del self._data[key]
            return MISSING
        self._data.move_to_end(key)
        return found[1]

    def put(self, key: str, value: Any, *, expires_at: float, epoch: int) -> None:
        """Keep ``value`` until wall-clock ``expires_at`` (capped by ``max_age``).

        Skipped when an invalidation arrived since ``epoch`` was read.
        """
        if not self.active or epoch != self.epoch:
            return
        ttl = min(self.max_age, expires_at - time.time())
        if ttl <= 0:
            return
        self._data[key] = (time.monotonic() + ttl, value)
        self._data.move_to_end(key)
        if len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def discard(self, keys: list[str]) -> None:
        """Drop ``keys`` (an invalidation arrived)."""
        self.epoch += 1
        for key in keys:
            self._data.pop(key, None)

    def flush(self) -> None:
        """Drop everything."""
        self.epoch += 1
        self._data.clear()


class NearSync:
    """Keeps a :class:`NearCache` coherent by listening to the backend's announcements.

    A component: ``start()`` subscribes in the background, ``stop()`` cancels.
    """

    def __init__(self, near: NearCache, backend: InvalidationSource, log: Any) -> None:
        self.near = near
        self.backend = backend
        self.log = log
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start listening (the near cache switches on once subscribed)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="nativekit-near-cache-sync")

    async def stop(self) -> None:
        """Stop listening and switch the near cache off."""
        self._off()
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def _on(self) -> None:
        self._delay = 0.1
        self.near.flush()
        self.near.active = True
        self.subscribed.set()

    def _off(self) -> None:
        self.near.active = False
        self.near.flush()
        self.subscribed.clear()

    async def _run(self) -> None:
        self._delay = 0.1
        while True:
            try:
                await self.backend.listen(self.near.discard, self._on)
            except Exception as exc:
                self._off()
                self.log.warning("cache.near.unsubscribed", error=str(exc), retry_in_s=self._delay)
                await asyncio.sleep(self._delay)
                self._delay = min(self._delay * 2, 5.0)
